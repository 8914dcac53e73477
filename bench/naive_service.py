"""The baseline: an image classifier served the way the original tutorials build it.

FastAPI, an `async def` endpoint taking an `UploadFile`, the EfficientNet-Lite0 torch
model in eager mode, one image per request, no batching, the model called right in
the handler. The preprocessing is VisionDock's own (`to_tensor`), so the comparison
measures serving, not resizing code. Run: `python -m bench.naive_service --port N`.
"""

from __future__ import annotations

import argparse
import io

import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from services.trainer.backbone import default_preprocess, load_pretrained
from visiondock.preprocess import to_tensor

app = FastAPI(title="naive classifier")
model = load_pretrained("efficientnet-lite0")
spec = default_preprocess("efficientnet-lite0")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(file: UploadFile = File(...)) -> dict:
    image = Image.open(io.BytesIO(await file.read())).convert("RGB")
    batch = torch.from_numpy(to_tensor(image, spec)).unsqueeze(0)
    with torch.no_grad():
        probabilities = torch.softmax(model(batch), dim=1)[0]
    top = torch.topk(probabilities, 5)
    return {"predictions": [{"label": f"class_{int(i)}", "probability": float(p)}
                            for p, i in zip(top.values, top.indices, strict=True)]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default (what tutorials get)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
