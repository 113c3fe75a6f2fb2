"""From texture to land cover: train a model with the GLCM layers, save it, and map a
scene it has not seen with the pipeline.

The scene: a map of regions (Voronoi cells), each filled with one of three
scikit-image textures (brick, grass, gravel), every texture matched to the same
histogram (so the same mean and variance). A pixel's value alone therefore says
nothing about its class; its neighbourhood's texture says a lot. Training uses the left half of one scene,
the held-out score its right half; a second scene, with other regions and other
parts of the textures, is mapped by the pipeline at the end.

Two models, trained on the same pixels:

- bands alone: ``Dense`` layers on each pixel's value;
- texture: ``Quantize(32, 1, 255) -> TextureMap(8 features, window 15) ->
  Normalization -> Dense`` layers. The quantization range is part of the model, so it
  meets every scene as it met its training data. The texture map has no weights:
  its features are computed once and only the head is trained.

Run::

    python examples/texture_land_cover.py --out land_cover

prints both held-out accuracies, saves ``land_cover/texture_model.keras`` and the
unseen scene ``land_cover/unseen/scene.tif`` (and its truth), then maps it with the
pipeline as ``./run_local.sh --input land_cover/unseen/scene.tif --model
land_cover/texture_model.keras --classes brick,grass,gravel --output land_cover/out``
does (the command is printed; ``--no-map`` skips the run), and scores its
``classes.tif`` against the truth. ``--figure PATH`` writes the picture of the README:
the unseen scene, its truth and the pipeline's class map. The tests run it small.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import keras
import numpy as np
import rasterio
import rasterio.errors
import skimage.data
from rasterio.transform import Affine

import glcm

CLASSES = ("brick", "grass", "gravel")
FEATURES = ("contrast", "dissimilarity", "homogeneity", "asm", "entropy", "correlation",
            "variance", "mean")
LEVELS, VMIN, VMAX = 32, 1.0, 255.0
MEAN, STD = 128.0, 32.0


def textures() -> np.ndarray:
    """(3, 512, 512) float32: the three textures with the same histogram (so the
    same mean and variance): each pixel's rank in its texture mapped onto one normal
    distribution (mean 128, standard deviation 32) clipped to 1..255. A pixel's
    value alone then says nothing of its class; only the arrangement differs."""
    from scipy.special import ndtri

    out = []
    for name in CLASSES:
        t = getattr(skimage.data, name)().astype(np.float64)
        ranks = np.argsort(np.argsort(t.ravel(), kind="stable"), kind="stable")
        normal = ndtri((ranks + 0.5) / ranks.size).reshape(t.shape)
        out.append(np.clip(normal * STD + MEAN, VMIN, VMAX))
    return np.stack(out).astype(np.float32)


def scene(side: int, regions: int, seed: int, row0: int):
    """(values float32 (side, side), truth uint8 (side, side)): Voronoi cells, each of
    one class, filled from the textures' rows ``row0..row0 + side``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, side, (regions, 2))
    rows, cols = np.mgrid[0:side, 0:side]
    distance = ((rows[..., None] - centres[:, 0]) ** 2 +
                (cols[..., None] - centres[:, 1]) ** 2)
    cell = np.argmin(distance, axis=-1)
    # every class in both halves (training and held-out): classes dealt in turn to
    # the cells of each half
    cell_class = np.zeros(regions, np.int64)
    for left in (True, False):
        cells = np.flatnonzero((centres[:, 1] < side / 2) == left)
        cell_class[cells] = rng.permutation(np.arange(len(cells)) % len(CLASSES))
    truth = cell_class[cell].astype(np.uint8)
    source = textures()[:, row0:row0 + side, :side]
    values = np.take_along_axis(source, truth[None].astype(np.int64), axis=0)[0]
    return values.astype(np.float32), truth


def pixel_head(n_inputs: int, name: str):
    """Dense layers applied to every pixel: (batch, H, W, n_inputs) -> classes."""
    x = keras.Input((None, None, n_inputs))
    hidden = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(x, keras.layers.Dense(len(CLASSES), activation="softmax")(hidden),
                       name=name)


def fit_head(head, inputs: np.ndarray, labels: np.ndarray, samples: int, epochs: int,
             seed: int):
    """Trains ``head`` on ``samples`` random pixels of ``inputs`` (H, W, C)."""
    rng = np.random.default_rng(seed)
    finite = np.isfinite(inputs).all(axis=-1)
    rows, cols = np.nonzero(finite)
    pick = rng.choice(len(rows), min(samples, len(rows)), replace=False)
    x = inputs[rows[pick], cols[pick]][:, None, None, :]
    y = labels[rows[pick], cols[pick]][:, None, None]
    keras.utils.set_random_seed(seed)
    head.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    head.fit(x, y, batch_size=256, epochs=epochs, verbose=0)


def texture_model(head, mean: np.ndarray, variance: np.ndarray, window: int):
    """The whole model: values -> Quantize -> TextureMap -> Normalization -> head."""
    x = keras.Input((None, None, 1), name="band")
    codes = glcm.layers.Quantize(LEVELS, VMIN, VMAX)(x)
    maps = glcm.layers.TextureMap(list(FEATURES), window=window, levels=LEVELS)(codes)
    scaled = keras.layers.Normalization(mean=mean.tolist(), variance=variance.tolist())(maps)
    return keras.Model(x, head(scaled), name="texture_land_cover")


def accuracy(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Share of pixels whose arg-max is the truth (pixels without a prediction count
    as wrong)."""
    known = np.isfinite(probabilities).all(axis=-1)
    predicted = np.where(known, np.argmax(np.nan_to_num(probabilities), axis=-1), -1)
    return float(np.mean(predicted == truth))


def write_scene(path: str, values: np.ndarray) -> None:
    with rasterio.open(path, "w", driver="GTiff", height=values.shape[0],
                       width=values.shape[1], count=1, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4500000)) as dst:
        dst.write(np.round(values).astype(np.uint8), 1)


def write_figure(path: str, values: np.ndarray, truth: np.ndarray, classes: np.ndarray):
    """PNG: the scene (grey), its truth and the class map, in the class colours of
    classes.tif, side by side."""
    from transforms.io.cog import NO_CLASS, class_colours

    colours = np.zeros((256, 3), np.uint8)
    for value, rgba in class_colours(len(CLASSES)).items():
        colours[value] = rgba[:3]
    colours[NO_CLASS] = (255, 255, 255)
    grey = np.repeat(np.round(values).astype(np.uint8)[..., None], 3, axis=-1)
    gap = np.full((values.shape[0], 8, 3), 255, np.uint8)
    picture = np.concatenate([grey, gap, colours[truth], gap, colours[classes]], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", height=picture.shape[0],
                           width=picture.shape[1], count=3, dtype="uint8") as dst:
            dst.write(np.moveaxis(picture, -1, 0))


def run(out: str, side: int = 256, regions: int = 14, window: int = 15,
        samples: int = 20000, epochs: int = 30, seed: int = 0, map_unseen: bool = True,
        figure: str = None, tile: int = 128) -> dict:
    """Trains both models, saves the texture one, and (``map_unseen``) maps an unseen
    scene with the pipeline. Returns the accuracies and paths."""
    os.makedirs(out, exist_ok=True)
    values, truth = scene(side, regions, seed, row0=0)
    half = side // 2
    train_area = np.zeros_like(truth, bool)
    train_area[:, :half] = True
    held_out = ~train_area
    labels = np.where(train_area, truth, 0)

    # (a) the bands alone
    bands = pixel_head(1, "bands_alone")
    scaled = ((values - MEAN) / STD)[..., None]
    fit_head(bands, np.where(train_area[..., None], scaled, np.nan), labels, samples,
             epochs, seed)
    bands_probabilities = np.asarray(bands(scaled[None]))[0]

    # (b) texture: features of the training half (computed there alone, so no pixel
    # of the held-out half reaches them), their scale, then the head
    train_values = values[:, :half]
    maps = glcm.layers.TextureMap(list(FEATURES), window=window, levels=LEVELS)(
        glcm.layers.Quantize(LEVELS, VMIN, VMAX)(train_values[None, ..., None]))
    maps = np.asarray(maps)[0]
    mean, variance = np.nanmean(maps, axis=(0, 1)), np.nanvar(maps, axis=(0, 1)) + 1e-6
    head = pixel_head(len(FEATURES), "texture_head")
    fit_head(head, (maps - mean) / np.sqrt(variance), truth[:, :half], samples, epochs,
             seed)
    model = texture_model(head, mean, variance, window)
    texture_probabilities = np.asarray(model(values[None, ..., None]))[0]
    model_path = os.path.join(out, "texture_model.keras")
    model.save(model_path)

    result = {
        "bands_accuracy": accuracy(bands_probabilities[held_out], truth[held_out]),
        "texture_accuracy": accuracy(texture_probabilities[held_out], truth[held_out]),
        "model": model_path,
    }
    print(f"held-out accuracy, bands alone: {result['bands_accuracy']:.3f}; with "
          f"texture: {result['texture_accuracy']:.3f} ({len(CLASSES)} classes, chance "
          f"{1 / len(CLASSES):.3f})")
    print(f"model saved: {model_path} (halo {glcm.model_halo(model)} pixels)")

    # a scene it has not seen: other regions, other rows of the textures
    unseen_values, unseen_truth = scene(side, regions, seed + 1, row0=512 - side)
    folder = os.path.join(out, "unseen")
    os.makedirs(folder, exist_ok=True)
    scene_path = os.path.join(folder, "scene.tif")
    write_scene(scene_path, unseen_values)
    np.save(os.path.join(folder, "truth.npy"), unseen_truth)
    output = os.path.join(out, "out")
    flags = [f"--input={scene_path}", f"--model={model_path}",
             f"--classes={','.join(CLASSES)}", f"--output={output}", f"--tile={tile}"]
    print("map it:  ./run_local.sh " + " ".join(flags))
    result.update(scene=scene_path, output=output)
    if not map_unseen:
        return result
    from pipeline.run import main

    started = time.perf_counter()
    summary = main(flags)
    if summary.exit_code != 0 or summary.failures:
        raise RuntimeError(f"the pipeline failed: {summary.error or summary.failures}")
    with rasterio.open(os.path.join(output, "scene", "classes.tif")) as src:
        classes = src.read(1)
    result["unseen_accuracy"] = float(np.mean(classes == unseen_truth))
    print(f"unseen scene mapped by the pipeline in {time.perf_counter() - started:.1f} s: "
          f"accuracy {result['unseen_accuracy']:.3f} "
          f"({os.path.join(output, 'scene', 'classes.tif')})")
    if figure:
        write_figure(figure, unseen_values, unseen_truth, classes)
        print(f"figure: {figure} (scene, truth, class map)")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="land_cover", help="folder for the model, the "
                        "unseen scene and the pipeline's output (default land_cover)")
    parser.add_argument("--side", type=int, default=256, help="scene side, <= 256")
    parser.add_argument("--window", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-map", dest="map_unseen", action="store_false",
                        help="train and save only; print the pipeline command")
    parser.add_argument("--figure", default=None, help="PNG of scene, truth, class map")
    args = parser.parse_args()
    if not 32 <= args.side <= 256:
        parser.error("--side must be in 32..256 (two scenes from 512-pixel textures)")
    run(args.out, side=args.side, window=args.window, epochs=args.epochs, seed=args.seed,
        map_unseen=args.map_unseen, figure=args.figure)


if __name__ == "__main__":
    main()
