"""Running a user's ONNX inpainting export with onnxruntime, in the conventions IOPaint uses for these models.

Read from IOPaint (``iopaint/model/lama.py``, ``mi_gan.py``, ``base.py``) and the MI-GAN repository's
``scripts/create_onnx_pipeline.py``:

- **LaMa** (Suvorov et al. 2022, "Resolution-robust Large Mask Inpainting with Fourier Convolutions"): inputs
  ``image`` float [1, 3, H, W] RGB in [0, 1] and ``mask`` float [1, 1, H, W] with 1 = hole (binarised: any alpha > 0);
  the network blanks the hole itself. Output [1, 3, H, W] RGB, in [0, 1] in IOPaint's export or already in
  [0, 255] in some ONNX conversions (e.g. the common ``lama_fp32.onnx``): the range is read from the output (a
  maximum above 2 means 0-255). H and W multiples of 8 (IOPaint's ``pad_mod``); fixed 512 x 512 in many exports.
- **MI-GAN pipeline export** (Sargsyan et al. 2023, "MI-GAN: A Simple Baseline for Image Inpainting on Mobile
  Devices"): ``image`` uint8 [1, 3, H, W] RGB, ``mask`` uint8 [1, 1, H, W] with **255 = keep, 0 = hole**; it resizes
  to its 512 (or 256) internally and returns ``result`` uint8 [1, 3, H, W] already composited.
- **MI-GAN generator** (IOPaint's TorchScript convention, exported bare): one float input [1, 4, 512, 512] =
  concat(0.5 - hole, image * (1 - hole)) with the image in [-1, 1]; output [1, 3, 512, 512] in [-1, 1].

Large photos use the runner's crop (IOPaint's "crop" strategy: the hole's box plus context, at most 1024 px for
a dynamic LaMa, 512 for MI-GAN), so a hole in a 24-megapixel photo costs what it costs in a small one. A CUDA GPU is
used when onnxruntime has its CUDA provider (the ``onnxruntime-gpu`` package) and the engine's device is CUDA.
The one network call runs on a helper thread so that a cancel stops it (``RunOptions.terminate``) within 50 ms.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from engine.api import (Cancelled, CancelToken, Geometry, Inpainter, InpaintError, JobGen, ModelInfo, ModelOutput,
                        Preview, Request)
from engine.onnx import geometry
from engine.weights import CACHE, cache_key


class _Session:
    """A cached onnxruntime session (``.to`` is a no-op: the provider is chosen when it is made)."""

    def __init__(self, path: Path, providers: list[str]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InpaintError(f"{path.name}: onnxruntime cannot load it ({text})") from None
        self.providers = self.session.get_providers()

    def to(self, device) -> "_Session":
        return self


def _providers() -> list[str]:
    import onnxruntime as ort

    from engine.device import compute_device

    want_gpu = compute_device().type == "cuda"
    if want_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def run_session(session, feeds: dict, cancel: CancelToken | None) -> list:
    """``session.run`` on a helper thread; a cancel sets ``RunOptions.terminate`` and raises Cancelled."""
    import onnxruntime as ort

    options = ort.RunOptions()
    box: dict = {}

    def work() -> None:
        try:
            box["out"] = session.run(None, feeds, options)
        except Exception as exc:  # reported on the job's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="onnx-run", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
        if cancel is not None and cancel.cancelled:
            options.terminate = True
            worker.join()
            raise Cancelled()
    if "error" in box:
        text = str(box["error"]).strip().splitlines()[0][:200] if str(box["error"]).strip() else "error"
        raise InpaintError(f"onnxruntime failed: {text}")
    return box["out"]


def _feed_dtype(inp) -> type:
    return np.float16 if "float16" in inp.type else np.float32


class OnnxInpainter(Inpainter):
    def __init__(self, info: ModelInfo, path: str = "", convention: str = "lama", side: int | None = None) -> None:
        super().__init__(info)
        self.path, self.convention, self.side = Path(path), convention, side

    def geometry(self, params: dict) -> Geometry:
        return geometry(self.convention, self.side, float(params.get("context", 1.0)))

    def session(self) -> _Session:
        providers = _providers()
        key = cache_key("onnx", self.path, self.path.stat().st_mtime_ns, ",".join(providers))
        return CACHE.get(key, lambda: _Session(self.path, providers))

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        if not self.path.is_file():
            raise InpaintError(f"ONNX model not found: {self.path}")
        sess = self.session().session
        inputs = sess.get_inputs()
        image, hole = request.image, request.mask.astype(bool)
        if self.convention == "lama":
            by_ch = {i.shape[1]: i for i in inputs if len(i.shape) == 4}
            img_in, mask_in = by_ch.get(3, inputs[0]), by_ch.get(1, inputs[1])
            feeds = {img_in.name: (image.transpose(2, 0, 1)[None] / 255.0).astype(_feed_dtype(img_in)),
                     mask_in.name: hole[None, None].astype(_feed_dtype(mask_in))}
            out = np.asarray(run_session(sess, feeds, cancel)[0], dtype=np.float32)[0].transpose(1, 2, 0)
            scale = 1.0 if float(np.nanmax(out)) > 2.0 else 255.0  # [0, 255] exports vs IOPaint's [0, 1]
            result = np.clip(np.rint(out * scale), 0, 255).astype(np.uint8)
        elif self.convention == "migan-pipeline":
            by_ch = {i.shape[1]: i for i in inputs if len(i.shape) == 4}
            img_in, mask_in = by_ch.get(3, inputs[0]), by_ch.get(1, inputs[1])
            feeds = {img_in.name: np.ascontiguousarray(image.transpose(2, 0, 1)[None]),
                     mask_in.name: np.where(hole, 0, 255).astype(np.uint8)[None, None]}
            result = np.asarray(run_session(sess, feeds, cancel)[0])[0].transpose(1, 2, 0).astype(np.uint8)
        else:
            x = image.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0
            m = hole[None, None].astype(np.float32)
            feeds = {inputs[0].name: np.concatenate([0.5 - m, x * (1 - m)], axis=1).astype(_feed_dtype(inputs[0]))}
            out = np.asarray(run_session(sess, feeds, cancel)[0], dtype=np.float32)[0].transpose(1, 2, 0)
            result = np.clip(np.rint((out + 1.0) * 127.5), 0, 255).astype(np.uint8)
        if result.shape != image.shape:
            raise InpaintError(f"{self.path.name} returned {result.shape[1]}x{result.shape[0]}, expected "
                               f"{image.shape[1]}x{image.shape[0]}: not an image-to-image inpainting model")
        yield Preview(step=1, total=1, image=result, message=f"onnxruntime: {', '.join(self.session().providers)}")
        return ModelOutput(result, unet_calls=1, stats={"providers": self.session().providers,
                                                        "convention": self.convention})
