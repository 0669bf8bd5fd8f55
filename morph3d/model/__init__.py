"""The 3D morphable model: data, pose, camera, lighting, parameter layouts, face definitions, loaders and
export (``export_mesh`` loads trimesh on first use, so importing the model stays light)."""
from .camera import Camera, project_points
from .canonical import ModelFormatError
from .face_definitions import (IBUG68, NON_CONTOUR_PARTS, NON_SKIN_PARTS, NUM_LANDMARKS, REGION_PARTS, LandmarkLayout,
                               region_parts, regions_without)
from .layout import (DEEP3D_DIM, Block, ParamLayout, deep3d_camera, deep3d_layout, from_deep3d, model_dims,
                     to_deep3d)
from .lighting import ambient_lighting, irradiance, sh_basis, shade
from .morphable_model import ModelOutput, MorphableModel, load_model
from .params import FaceParams, default_params
from .pose import euler_to_matrix, matrix_to_euler

__all__ = [
    "Block", "Camera", "DEEP3D_DIM", "FaceParams", "IBUG68", "LandmarkLayout", "ModelFormatError", "ModelOutput",
    "MorphableModel", "NON_CONTOUR_PARTS", "NON_SKIN_PARTS", "NUM_LANDMARKS", "ParamLayout", "REGION_PARTS",
    "ambient_lighting", "deep3d_camera", "deep3d_layout", "default_params", "euler_to_matrix", "export_mesh",
    "from_deep3d", "irradiance", "load_model", "matrix_to_euler", "model_dims", "project_points", "region_parts",
    "regions_without", "sh_basis", "shade", "to_deep3d",
]


def __getattr__(name):
    if name == "export_mesh":  # trimesh and PIL load only when a mesh is exported
        from .export import export_mesh
        return export_mesh
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
