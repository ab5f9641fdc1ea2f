"""CAM engine: class activation maps for any classifier, safe to call inside a training loop.

from camlab.cam import compute_cam, cam_from_features, CAM_METHODS
maps = compute_cam(model, images, method="gradcam", targets=labels, output_size=224)
"""

from camlab.cam.engine import cam_from_features, compute_cam, compute_cams
from camlab.cam.layers import default_cam_layer, unwrap_model
from camlab.cam.postprocess import minmax_normalize, resize_maps
from camlab.cam.registry import CAM_METHODS, get_method

__all__ = [
    "CAM_METHODS",
    "cam_from_features",
    "compute_cam",
    "compute_cams",
    "default_cam_layer",
    "get_method",
    "minmax_normalize",
    "resize_maps",
    "unwrap_model",
]
