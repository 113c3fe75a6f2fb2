"""graycomatrix + graycoprops: this project vs scikit-image vs the seed layer.

Batch of 512x512 uint8 images, levels 256, distance 1, four angles, six props.
Usage: python -m benchmarks.bench_glcm [--batch 32] [--size 512]
"""

import argparse

import numpy as np
from skimage import data
from skimage.feature import graycomatrix as sk_graycomatrix
from skimage.feature import graycoprops as sk_graycoprops

import glcm
from benchmarks.common import best_of, header

PROPS = ["contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation"]
ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]


def images(batch, size):
    textures = [data.brick(), data.grass(), data.gravel(), data.camera()]
    out = []
    for b in range(batch):
        t = np.tile(textures[b % 4], (2, 2))
        r0, c0 = (b * 37) % (t.shape[0] - size), (b * 53) % (t.shape[1] - size)
        out.append(t[r0:r0 + size, c0:c0 + size])
    return np.stack(out).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    header("GLCM + 6 props")
    x = images(args.batch, args.size)
    pairs = args.batch * 4 * args.size * (args.size - 1)  # approx. pairs counted

    def ours():
        P = glcm.graycomatrix(x, [1], ANGLES, 256, symmetric=True)
        np.asarray(glcm.graycoprops(P, PROPS))

    def skimage_loop():
        for im in x:
            P = sk_graycomatrix(im, [1], ANGLES, 256, symmetric=True, normed=True)
            for p in PROPS:
                sk_graycoprops(P, p)

    # Best of 5 for both: single runs vary by about 30 % on busy cores.
    results = {"glcm (this project)": best_of(ours, repeat=5),
               "scikit-image loop": best_of(skimage_loop, repeat=5)}
    P = glcm.graycomatrix(x, [1], ANGLES, 256, symmetric=True)
    # [0]: waits for the whole result without copying all 33 MB of it to numpy.
    split = {"graycomatrix": best_of(
                 lambda: np.asarray(glcm.graycomatrix(x, [1], ANGLES, 256, symmetric=True)[0]),
                 repeat=5),
             "graycoprops": best_of(lambda: np.asarray(glcm.graycoprops(P, PROPS)), repeat=5)}
    try:
        import tensorflow as tf

        from benchmarks.seed_layer import SeedGLCMMultipleOffsets, seed_features

        layer = SeedGLCMMultipleOffsets(256, [[0, 1], [1, 1], [1, 0], [1, -1]])
        # layer.call: the seed is TensorFlow code, run as such whatever the Keras backend.
        seed = tf.function(lambda t: seed_features(layer.call(t)))
        results["seed layer (tf.function)"] = best_of(lambda: seed(x).numpy(), repeat=1)
    except ImportError:
        print("seed layer: skipped (needs TensorFlow)")
    ours_time = results["glcm (this project)"]
    print(f"batch {args.batch} x {args.size}x{args.size}, levels 256, distance 1, "
          f"4 angles, {len(PROPS)} props")
    for name, seconds in results.items():
        print(f"{name:28s} {seconds:8.3f} s  {pairs / seconds / 1e6:9.1f} M pairs/s  "
              f"this project is {seconds / ours_time:6.1f}x faster")
    print("this project's time: " + ", ".join(f"{name} {seconds:.3f} s"
                                              for name, seconds in split.items()))


if __name__ == "__main__":
    main()
