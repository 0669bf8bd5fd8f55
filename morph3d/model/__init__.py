"""The 3D morphable model: data, pose, camera, lighting, loaders and export."""
from .camera import Camera
from .canonical import ModelFormatError
from .export import export_mesh
from .lighting import ambient_lighting, irradiance, sh_basis, shade
from .morphable_model import ModelOutput, MorphableModel, load_model
from .params import FaceParams, default_params, from_deep3d, to_deep3d
from .pose import euler_to_matrix, matrix_to_euler

__all__ = [
    "Camera", "FaceParams", "ModelFormatError", "ModelOutput", "MorphableModel", "ambient_lighting",
    "default_params", "euler_to_matrix", "export_mesh", "from_deep3d", "irradiance", "load_model",
    "matrix_to_euler", "sh_basis", "shade", "to_deep3d",
]
