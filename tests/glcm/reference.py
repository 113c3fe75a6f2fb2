"""Independent numpy references for features scikit-image does not define."""

import numpy as np


def normalized(P):
    P = np.asarray(P, dtype=np.float64)
    return P / P.sum()


def feature_scale(P, name):
    """Magnitude against which float32 rounding is judged for ``name``.

    Cluster shade is a sum of signed cubes that can cancel to almost nothing: float32
    can only be held to the size of the terms, Σ|i+j-μx-μy|³ P.
    """
    values = numpy_features(P)
    if name == "cluster_shade":
        P = normalized(P)
        L = P.shape[0]
        i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        return max(1.0, (np.abs(i + j - values["sum_average"]) ** 3 * P).sum())
    return max(1.0, abs(values[name]))


def numpy_features(P):
    """Every quantity of docs/features.md for one (L, L) GLCM, straight from the formulas."""
    P = normalized(P)
    L = P.shape[0]
    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    px, py = P.sum(1), P.sum(0)
    mx, my = (np.arange(L) * px).sum(), (np.arange(L) * py).sum()
    vx = ((np.arange(L) - mx) ** 2 * px).sum()
    vy = ((np.arange(L) - my) ** 2 * py).sum()

    def H(q):
        q = q[q > 0]
        return -(q * np.log(q)).sum()

    psum = np.bincount((i + j).ravel(), P.ravel(), minlength=2 * L - 1)
    pdiff = np.bincount(np.abs(i - j).ravel(), P.ravel(), minlength=L)
    k = np.arange(2 * L - 1)
    savg = (k * psum).sum()
    kd = np.arange(L)
    mud = (kd * pdiff).sum()
    hx, hy, hxy = H(px), H(py), H(P)
    pxpy = np.outer(px, py)
    nz = P > 0
    hxy1 = -(P[nz] * np.log(pxpy[nz])).sum()
    nzp = pxpy > 0
    hxy2 = -(pxpy[nzp] * np.log(pxpy[nzp])).sum()
    single = (px > 0).sum() < 2 or (py > 0).sum() < 2
    # Q(i, j) = Σ_k P(i, k) P(j, k) / (p_x(i) p_y(k)) over p_x, p_y > 0
    rows, cols = px > 0, py > 0
    Ps = P[np.ix_(rows, cols)]
    Q = (Ps / px[rows][:, None] / py[cols][None, :]) @ Ps.T
    eig = np.sort(np.real(np.linalg.eigvals(Q)))[::-1]
    maxcorr = 0.0 if single or len(eig) < 2 else np.sqrt(max(eig[1], 0.0))
    s = i + j - mx - my
    return {
        "contrast": ((i - j) ** 2 * P).sum(),
        "dissimilarity": (np.abs(i - j) * P).sum(),
        "homogeneity": (P / (1 + (i - j) ** 2)).sum(),
        "inverse_difference": (P / (1 + np.abs(i - j))).sum(),
        "asm": (P ** 2).sum(),
        "energy": np.sqrt((P ** 2).sum()),
        "correlation": 1.0 if single else ((i - mx) * (j - my) * P).sum() / np.sqrt(vx * vy),
        "mean": mx,
        "variance": vx,
        "std": np.sqrt(vx),
        "entropy": hxy,
        "sum_average": savg,
        "sum_variance": ((k - savg) ** 2 * psum).sum(),
        "sum_entropy": H(psum),
        "difference_variance": ((kd - mud) ** 2 * pdiff).sum(),
        "difference_entropy": H(pdiff),
        "imc1": 0.0 if max(hx, hy) == 0 else (hxy - hxy1) / max(hx, hy),
        "imc2": np.sqrt(max(0.0, 1 - np.exp(-2 * (hxy2 - hxy)))),
        "max_correlation": maxcorr,
        "cluster_shade": (s ** 3 * P).sum(),
        "cluster_prominence": (s ** 4 * P).sum(),
        "joint_max": P.max(),
        "autocorrelation": (i * j * P).sum(),
        "cluster_tendency": (s ** 2 * P).sum(),
        "inverse_difference_normalized": (P / (1 + np.abs(i - j) / L)).sum(),
        "inverse_difference_moment_normalized": (P / (1 + ((i - j) / L) ** 2)).sum(),
        "inverse_variance": (P[i != j] / ((i - j)[i != j] ** 2)).sum(),
    }
