# SPDX-License-Identifier: Apache-2.0
"""proteus - post-training quantization of ESM-2 protein language models,
over the C library libproteus (engine/api/proteus.h) through ctypes.

    from proteus import ModelInterface, QuantizationManager
    manager = QuantizationManager(quantization_scheme="static", precision="int8")
    model = ModelInterface(name="esm2_t6_8M_UR50D", path="model.safetensors")
    q = manager.quantize_model(model, calibration_data="proteins.fasta")
    q.logits(["MKTAYIAKQR"])            # numpy, from the C engine

The library is found at $PROTEUS_LIBRARY, in the checkout's build folder
when the package runs from python/, or where the dynamic loader looks."""
from ._blas import choose_core as _choose_core

_choose_core()  # before anything of the package loads numpy (proteus/_blas.py)
from .config import QuantizationConfig
from .distributed import DistributedQuantizationManager
from .errors import (AccuracyError, CalibrationError, ConfigurationError, HardwareCompatibilityError,
                     ProteusError, QuantizationError)
from .manager import NotAvailableError, QuantizationManager
from .model import ModelInterface, QuantizedModel

__version__ = "0.1.0"
__all__ = ["QuantizationConfig", "QuantizationManager", "DistributedQuantizationManager", "ModelInterface",
           "QuantizedModel", "ProteusError", "QuantizationError", "CalibrationError",
           "HardwareCompatibilityError", "ConfigurationError", "AccuracyError", "NotAvailableError"]
