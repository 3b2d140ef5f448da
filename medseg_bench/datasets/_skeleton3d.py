"""A parametric adult pelvis, lumbar/thoracic spine, ribs and proximal femurs as signed distance
fields in physical mm, shared by the ``ct_hip`` and ``spect_bone`` simulators.

Frame (LPS, mm): origin midway between the femoral head centres, ``x`` to the patient's left, ``y``
posterior, ``z`` superior. Dimensions follow adult reference anatomy (inter-acetabular distance
~180–200 mm, femoral head radius ~22–27 mm, iliac crest ~120–150 mm above the head centres, neck–shaft
angle ~125–135°; e.g. Gray's Anatomy, 41st ed., ch. 80–81) scaled by a per-case body size factor.

Each bone is returned as a :class:`BoneSdf`: the outer surface, the inner surface of the cortex
(trabecular bone inside), and optionally a marrow cavity (femoral canal). The hip bone (os coxae) is
separated from the femoral heads by the hip-joint space and from the sacrum by the sacro-iliac joint
space by subtracting the neighbour dilated by the joint width, so labels never touch other bones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._anatomy3d import (
    Grid,
    SdfCanvas,
    capsule,
    ellipsoid,
    elliptic_arc_distance,
    elliptic_cylinder,
    smin,
    sphere,
)

__all__ = ["BoneSdf", "acetabular_axis", "body_sdf", "render_implants", "render_skeleton", "sample_body", "sample_skeleton"]


@dataclass
class BoneSdf:
    """Signed distances (mm, float32, grid shape) of one bone group's outer surface, cortex inner
    surface and marrow cavity (``None`` when absent)."""

    outer: np.ndarray
    inner: np.ndarray
    marrow: np.ndarray | None = None


def sample_skeleton(rng: np.random.Generator, ribs: bool = False, scale: float | None = None,
                    female: bool | None = None) -> dict:
    """Per-case anatomical parameters (mm, radians) drawn around adult reference values.

    ``scale`` (body size factor) and ``female`` come from a cohort profile when given; otherwise the
    scale is drawn in 0.9-1.1 and the pelvis is sex-neutral. A female pelvis is wider and shallower for
    its size: inter-acetabular distance x1.03, iliac wings flared x1.08, crest x0.95, sacrum x1.04, and a
    smaller femoral head (x0.9; adult femoral head diameter ~48-50 mm in men, ~43-45 mm in women; Gray's
    Anatomy, 41st ed., ch. 80-81)."""
    S = float(rng.uniform(0.9, 1.1)) if scale is None else float(scale)
    u = rng.uniform
    p = {
        "scale": S,
        "head_offset": 92.0 * S * u(0.96, 1.04),
        "head_radius": 24.0 * S * u(0.92, 1.08),
        "hip_joint": u(2.5, 4.0),
        "si_joint": u(2.0, 3.5),
        "symphysis": u(4.0, 6.0),
        "crest_z": 132.0 * S * u(0.93, 1.07),
        "wing_thickness": u(2.5, 4.5),
        "wing_flare": u(0.9, 1.1),
        "neck_angle": np.deg2rad(u(125.0, 135.0)),
        "anteversion": np.deg2rad(u(8.0, 20.0)),
        "shaft_radius": 14.0 * S * u(0.92, 1.08),
        "shaft_cortex": u(4.0, 6.5),
        "cortex": {"hip": u(1.0, 2.0), "femur": u(1.5, 2.5), "sacrum": u(0.8, 1.5), "spine": u(0.8, 1.5),
                   "ribs": u(1.0, 1.5)},
        "sacrum_top": 100.0 * S * u(0.95, 1.05),
        "sacrum_width": 58.0 * S * u(0.93, 1.07),
        "lordosis": u(3.0, 8.0),
        "vertebra_height": 26.0 * S * u(0.94, 1.06),
        "disc_height": 9.0 * S * u(0.8, 1.2),
        "n_vertebrae": 12 if ribs else 4,
        "ribs": ribs,
        "thorax": (110.0 * S * u(0.9, 1.1), 150.0 * S * u(0.9, 1.1)),  # (ry, rx) of the rib cage
    }
    if female:
        for k, f in (("head_offset", 1.03), ("wing_flare", 1.08), ("crest_z", 0.95), ("sacrum_width", 1.04),
                     ("head_radius", 0.9), ("shaft_radius", 0.92)):
            p[k] *= f
    p["female"] = bool(female)
    return p


def _hip_side(c: SdfCanvas, p: dict, s: int) -> None:
    """One os coxae (side s = +1 left, -1 right): acetabular mass, ilium wing, pubis, ischium."""
    S, hw, R = p["scale"], p["head_offset"], p["head_radius"]
    # acetabular mass: covers the head medially and superiorly (the head is subtracted later)
    ca = (10 * S, 2 * S, s * (hw - 12 * S))
    ra = (R + 10 * S, R + 14 * S, R + 6 * S)
    c.add(lambda z, y, x: ellipsoid(z, y, x, ca, ra), np.subtract(ca, ra), np.add(ca, ra))
    # ilium wing: an elliptic arc per height, flaring from the acetabulum to the crest
    zb, zc, t0, fl = 22 * S, p["crest_z"], p["wing_thickness"], p["wing_flare"]

    def wing(z, y, x):
        h = np.clip((z - zb) / (zc - zb), 0.0, 1.0)
        hp = h ** 1.2
        rx, ry = (50 + 55 * fl * hp) * S, (45 + 40 * hp) * S
        phi0, phi1 = -0.35 - 0.26 * h, 1.05 + 0.43 * h
        d, phi = elliptic_arc_distance(y, s * x, -5 * S, 30 * S, ry, rx, phi0, phi1)
        ph = np.clip(phi, phi0, phi1)
        t = (t0 + 9 * np.exp(-(1 - h) * (zc - zb) / 12) + 14 * np.exp(-(((phi1 - ph) / 0.25) ** 2))
             + 5 * np.exp(-(((ph - phi0) / 0.15) ** 2)) + 18 * np.exp(-h * (zc - zb) / 25))
        mid, half = 0.5 * (phi0 + phi1), 0.5 * (phi1 - phi0)
        z_top = zc - 22 * S * ((ph - mid) / half) ** 2
        return np.maximum(np.maximum(d - 0.5 * t, z - z_top), zb - 15 * S - z)

    c.add(wing, (zb - 20 * S, -95 * S, 25 * S if s > 0 else -155 * S),
          (zc, 90 * S, 155 * S if s > 0 else -25 * S), blend=8.0)
    # posterior ilium (auricular part, PSIS): thick block meeting the sacrum
    cp = (70 * S, 55 * S, s * 52 * S)
    rp = (32 * S, 18 * S, 13 * S)
    c.add(lambda z, y, x: ellipsoid(z, y, x, cp, rp), np.subtract(cp, rp), np.add(cp, rp), blend=6.0)
    sym = p["symphysis"] / 2
    # pubis: superior ramus to the pubic body at the symphysis
    a, b = (-2 * S, -28 * S, s * (hw - 22 * S)), (-24 * S, -62 * S, s * (sym + 10 * S))
    c.add(lambda z, y, x: capsule(z, y, x, a, b, 9 * S, 10 * S), np.minimum(a, b) - 10 * S, np.maximum(a, b) + 10 * S, blend=5.0)
    cb, rb = (-34 * S, -60 * S, s * (sym + 11 * S)), (20 * S, 11 * S, 11 * S)
    c.add(lambda z, y, x: np.maximum(ellipsoid(z, y, x, cb, rb), sym - s * x), np.subtract(cb, rb), np.add(cb, rb), blend=5.0)
    # ischium, tuberosity and ischio-pubic ramus (closing the obturator foramen)
    a, b = (-8 * S, 18 * S, s * (hw - 20 * S)), (-58 * S, 22 * S, s * (hw - 30 * S))
    c.add(lambda z, y, x: capsule(z, y, x, a, b, 12 * S, 13 * S), np.minimum(a, b) - 13 * S, np.maximum(a, b) + 13 * S, blend=6.0)
    ct, rt = (-62 * S, 22 * S, s * (hw - 28 * S)), (14 * S, 16 * S, 13 * S)
    c.add(lambda z, y, x: ellipsoid(z, y, x, ct, rt), np.subtract(ct, rt), np.add(ct, rt), blend=6.0)
    a, b = (-66 * S, 12 * S, s * (hw - 35 * S)), (-48 * S, -56 * S, s * (sym + 10 * S))
    c.add(lambda z, y, x: np.maximum(capsule(z, y, x, a, b, 6.5 * S, 7.5 * S), sym - s * x),
          np.minimum(a, b) - 8 * S, np.maximum(a, b) + 8 * S, blend=4.0)
    # osteoarthritis: osteophytes on the acetabular rim (bone, part of the hip bone)
    for d, r in p.get("osteophytes", {}).get(s, []):
        ctr = np.array([0.0, 0.0, s * hw]) + (R + 1.5 + 0.6 * r) * np.asarray(d) * np.array([1, 1, s])
        c.add(lambda z, y, x, ctr=ctr, r=r: sphere(z, y, x, ctr, r), ctr - r, ctr + r, blend=2.5)


def _femur_side(c: SdfCanvas, canal: SdfCanvas, p: dict, s: int, z_min: float) -> None:
    """Proximal femur (side s): head, neck, greater/lesser trochanter and shaft; canal separately."""
    S, hw, R = p["scale"], p["head_offset"], p["head_radius"]
    ch = (0.0, 0.0, s * hw)
    c.add(lambda z, y, x: sphere(z, y, x, ch, R), np.subtract(ch, R), np.add(ch, R))
    el = np.pi - p["neck_angle"] + np.deg2rad(0.0)  # neck elevation above the shaft's perpendicular
    n = np.array([-np.sin(np.pi / 2 - el), np.sin(p["anteversion"]), s * np.cos(np.pi / 2 - el)])
    n /= np.linalg.norm(n)
    end = np.add(ch, 55 * S * n)
    c.add(lambda z, y, x: capsule(z, y, x, ch, end, 15 * S, 17 * S), np.minimum(ch, end) - 17 * S, np.maximum(ch, end) + 17 * S, blend=6.0)
    cg, rg = (-8 * S, 12 * S, s * (hw + 62 * S)), (22 * S, 18 * S, 14 * S)
    c.add(lambda z, y, x: ellipsoid(z, y, x, cg, rg), np.subtract(cg, rg), np.add(cg, rg), blend=8.0)
    ci, ri = (-38 * S, 8 * S, s * (hw + 44 * S)), (28 * S, 20 * S, 21 * S)
    c.add(lambda z, y, x: ellipsoid(z, y, x, ci, ri), np.subtract(ci, ri), np.add(ci, ri), blend=8.0)
    cl, rl = (-58 * S, 16 * S, s * (hw + 28 * S)), (10 * S, 9 * S, 9 * S)
    c.add(lambda z, y, x: ellipsoid(z, y, x, cl, rl), np.subtract(cl, rl), np.add(cl, rl), blend=6.0)
    rs = p["shaft_radius"]
    a, b = (-40 * S, 8 * S, s * (hw + 44 * S)), (z_min - 30, 5 * S, s * (hw + 32 * S))
    c.add(lambda z, y, x: capsule(z, y, x, a, b, rs + 1, rs), np.minimum(a, b) - rs - 1, np.maximum(a, b) + rs + 1, blend=8.0)
    a2 = (-75 * S, a[1] + (b[1] - a[1]) * 35 * S / (a[0] - b[0]), a[2] + (b[2] - a[2]) * 35 * S / (a[0] - b[0]))
    rc = rs - p["shaft_cortex"]
    canal.add(lambda z, y, x: capsule(z, y, x, a2, b, rc, rc), np.minimum(a2, b) - rc, np.maximum(a2, b) + rc)


def _sacrum(c: SdfCanvas, p: dict, z_bot: float) -> None:
    """Sacrum + coccyx: a curved plate, wide (alae) and thick at S1, narrowing downwards."""
    S, zt, w0 = p["scale"], p["sacrum_top"], p["sacrum_width"]

    def fn(z, y, x):
        t = np.clip((zt - z) / (zt - z_bot), 0.0, 1.0)
        yc = (35 + 30 * t + 14 * np.sin(np.pi * t)) * S
        hx = w0 * (1 - 0.8 * t ** 1.3)
        hy = (24 - 16 * t) * S
        r = np.minimum(hx, hy) * 0.6
        qx, qy = np.abs(x) - hx + r, np.abs(y - yc) - hy + r
        d = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0) - r
        return np.maximum(d, np.maximum(z - zt, z_bot - z))

    c.add(fn, (z_bot, 10 * S, -w0), (zt, 110 * S, w0))


def _vertebrae(c: SdfCanvas, p: dict) -> list[tuple[float, float]]:
    """Vertebral bodies with arches, spinous and transverse processes, stacked upwards from S1.
    Returns the (z, y) centre of each vertebral body (L5 first) for attaching ribs."""
    S, H, D = p["scale"], p["vertebra_height"], p["disc_height"]
    centres = []
    zc, yc = p["sacrum_top"] + D + H / 2, 32 * S
    for k in range(p["n_vertebrae"]):
        lumbar = k < 5
        ry, rx = (17 * S, 24 * S) if lumbar else (14 * S, 17 * S)
        hh = (H if lumbar else 0.85 * H) / 2
        ctr = (zc, yc, 0.0)
        c.add(lambda z, y, x, ctr=ctr, ry=ry, rx=rx, hh=hh: elliptic_cylinder(z, y, x, ctr, ry, rx, hh),
              (zc - hh, yc - ry, -rx), (zc + hh, yc + ry, rx))
        yb = yc + ry  # posterior wall of the body
        pts = []
        for sx in (-1, 1):
            pts.append([(zc, yb - 4, sx * rx * 0.5), (zc, yb + 14 * S, sx * 13 * S), (zc - 4, yb + 26 * S, 0.0)])
            tp = 50 * S if k == 0 else (42 * S if lumbar else 30 * S)
            pts.append([(zc, yb + 10 * S, sx * 14 * S), (zc + (0 if lumbar else 3), yb + (14 if lumbar else 22) * S, sx * tp)])
        pts.append([(zc - 4, yb + 26 * S, 0.0), (zc - (10 if lumbar else 22) * S, yb + 50 * S, 0.0)])
        for line in pts:
            c.add_tube(line, 5.0 * S, blend=3.0)
        centres.append((zc, yc))
        zc += H * (1.0 if lumbar else 0.85) + D
        yc += -p["lordosis"] if k < 4 else p["lordosis"] * 0.6  # lumbar lordosis, thoracic kyphosis
    return centres


def _ribs(c: SdfCanvas, p: dict, centres: list[tuple[float, float]]) -> None:
    """Ribs on the thoracic vertebrae (index 5 and up, T12 first): tubes from the transverse process
    around the rib-cage ellipse, descending anteriorly; the lowest two are short (floating ribs)."""
    S = p["scale"]
    ry, rx = p["thorax"]
    for j, (zc, yc) in enumerate(centres[5:]):
        yb = yc + 14 * S  # posterior wall of a thoracic body
        y0 = yb + 30 * S - ry  # rib-cage centre: the posterior rib angle lies ~30 mm behind the body
        t_end = 1.5 if j < 2 else 2.3
        th = np.linspace(0.35, t_end, 10)
        drop = 45 * S * (th - 0.35) / (2.3 - 0.35)
        w = np.minimum(1.0, 0.8 + 0.04 * j) * rx  # the cage narrows slightly upwards
        for s in (-1, 1):
            pts = np.stack([zc + 4 - drop, y0 + ry * np.cos(th), s * w * np.sin(th)], 1)
            start = np.array([[zc + 4, yb + 16 * S, s * 26 * S]])
            c.add_tube(np.concatenate([start, pts]), 5.5 * S, blend=2.0)


def render_skeleton(grid: Grid, p: dict) -> dict[str, BoneSdf]:
    """Render every bone group on ``grid``: ``hip`` (both os coxae), ``femur``, ``sacrum``, ``spine``
    and, when ``p["ribs"]``, ``ribs``. Joint spaces are cut out of the hip bone."""
    z_min = p.get("fov_z_min", grid.origin[0])
    z_bot_sacrum = -5 * p["scale"]
    femur, canal = SdfCanvas(grid), SdfCanvas(grid)
    for s in (1, -1):
        _femur_side(femur, canal, p, s, z_min)
    sacrum = SdfCanvas(grid)
    _sacrum(sacrum, p, z_bot_sacrum)
    spine = SdfCanvas(grid)
    centres = _vertebrae(spine, p)
    hip = SdfCanvas(grid)
    for s in (1, -1):
        _hip_side(hip, p, s)
    gap = p["hip_joint"]
    if "hip_joint_side" in p:  # per-side joint space (narrowed by osteoarthritis)
        gap = np.where(grid.coords()[2] > 0, p["hip_joint_side"][1], p["hip_joint_side"][-1]).astype(np.float32)
    tha = p.get("tha", {})
    for s, t in tha.items():  # arthroplasty: femoral head resected, acetabulum reamed to the cup
        ch = (0.0, 0.0, s * p["head_offset"])
        for canvas, r in ((femur, p["head_radius"] + 5.0), (hip, t["cup_r"])):
            cut = SdfCanvas(grid)
            cut.add(lambda z, y, x, ch=ch, r=r: sphere(z, y, x, ch, r), np.subtract(ch, r), np.add(ch, r))
            np.maximum(canvas.sdf, -cut.sdf, out=canvas.sdf)
    hip.subtract(femur.sdf, gap)
    hip.subtract(sacrum.sdf, p["si_joint"])
    hip.subtract(spine.sdf, p["si_joint"])
    sacrum.subtract(spine.sdf, p["disc_height"] * 0.8)
    cx = p["cortex"]
    femur_inner = np.maximum(femur.sdf + cx["femur"], np.float32(-75 * p["scale"]) - grid.coords()[0])
    out = {
        "hip": BoneSdf(hip.sdf, hip.sdf + cx["hip"]),
        "femur": BoneSdf(femur.sdf, np.minimum(femur_inner, canal.sdf), canal.sdf),
        "sacrum": BoneSdf(sacrum.sdf, sacrum.sdf + cx["sacrum"]),
        "spine": BoneSdf(spine.sdf, spine.sdf + cx["spine"]),
    }
    if p["ribs"]:
        ribs = SdfCanvas(grid)
        _ribs(ribs, p, centres)
        out["ribs"] = BoneSdf(ribs.sdf, ribs.sdf + cx["ribs"])
    return out


def acetabular_axis(s: int, inclination: float, anteversion: float) -> np.ndarray:
    """Unit vector (z, y, x) of the opening of the acetabulum / cup of side ``s``: tilted laterally and
    downwards by ``inclination`` from the vertical and forwards by ``anteversion`` (radians; the
    radiographic definitions of Murray, J Bone Joint Surg Br 75:228, 1993)."""
    n = np.array([-np.cos(inclination) * np.cos(anteversion), -np.sin(anteversion),
                  s * np.sin(inclination) * np.cos(anteversion)])
    return n / np.linalg.norm(n)


def render_implants(grid: Grid, p: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Total hip arthroplasty components of the sides in ``p["tha"]``: ``(metal SDF, polyethylene SDF)``
    -- a hemispherical metal cup (its outer surface is the reamed acetabulum), a metal femoral head, neck
    and a tapered stem down the femoral canal; a polyethylene liner between head and cup. ``None``
    without implants. :func:`render_skeleton` cuts the bone they replace."""
    tha = p.get("tha", {})
    if not tha:
        return None
    S, hw = p["scale"], p["head_offset"]
    metal, liner = SdfCanvas(grid), SdfCanvas(grid)
    for s, t in tha.items():
        ch = np.array([0.0, 0.0, s * hw])
        n = acetabular_axis(s, t["inclination"], t["anteversion"])
        r_o, th, r_h = t["cup_r"], t["cup_thickness"], t["head_r"]

        def cup(z, y, x, ch=ch, n=n, r_o=r_o, th=th):
            d = np.sqrt((z - ch[0]) ** 2 + (y - ch[1]) ** 2 + (x - ch[2]) ** 2)
            return np.maximum(np.abs(d - (r_o - th / 2)) - th / 2, (z - ch[0]) * n[0] + (y - ch[1]) * n[1] + (x - ch[2]) * n[2])

        def pe(z, y, x, ch=ch, n=n, r_i=r_o - th, r_h=r_h):
            d = np.sqrt((z - ch[0]) ** 2 + (y - ch[1]) ** 2 + (x - ch[2]) ** 2)
            return np.maximum(np.maximum(d - r_i, r_h - d), (z - ch[0]) * n[0] + (y - ch[1]) * n[1] + (x - ch[2]) * n[2])

        metal.add(cup, ch - r_o, ch + r_o)
        liner.add(pe, ch - r_o, ch + r_o)
        metal.add(lambda z, y, x, ch=ch, r=r_h: sphere(z, y, x, ch, r), ch - r_h, ch + r_h)
        # neck along the native neck direction, then the stem down the shaft axis
        el = np.pi - p["neck_angle"]
        nd = np.array([-np.sin(np.pi / 2 - el), np.sin(p["anteversion"]), s * np.cos(np.pi / 2 - el)])
        a = ch + 40 * S * nd / np.linalg.norm(nd)
        top = np.array([-40 * S, 8 * S, s * (hw + 44 * S)])
        axis = np.array([-1.0, -3.0 / 150, -s * 12.0 / 150])
        b = top + t["stem_length"] * axis / np.linalg.norm(axis)
        metal.add_tube([ch, a, top, b], [5.5, 7.0, 7.5, 4.0], blend=3.0)
    return metal.sdf, liner.sdf


def sample_body(rng: np.random.Generator, p: dict, fat: float | None = None) -> dict:
    """Body outline parameters (mm) around a skeleton ``p``: subcutaneous fat thickness (drawn in
    8-45 mm unless a cohort profile gives it), trunk and thigh cross-sections, perineum height."""
    S, u = p["scale"], rng.uniform
    fat = float(u(8.0, 45.0)) if fat is None else float(fat)
    return {
        "fat": fat,
        "trunk": ((112 + u(0, 22)) * S + fat, (160 + u(10, 30)) * S + fat),  # (ry, rx)
        "trunk_y": 18.0 * S,
        "thigh": ((62 + u(0, 12)) * S + 0.8 * fat, (60 + u(0, 15)) * S + 0.8 * fat),
        "perineum_z": -60.0 * S,
    }


def body_sdf(z, y, x, p: dict, b: dict) -> np.ndarray:
    """Signed distance (mm, approximate) to the skin: an elliptic trunk, closed below at the perineum,
    smoothly joined to two elliptic thighs around the femoral shafts."""
    S, hw = p["scale"], p["head_offset"]
    ry, rx = b["trunk"]
    u, v = x / rx, (y - b["trunk_y"]) / ry
    rho = np.sqrt(u * u + v * v) + 1e-6
    d = (rho - 1.0) / (np.sqrt((u / rx) ** 2 + (v / ry) ** 2) / rho + 1e-6)
    trunk = np.maximum(d, b["perineum_z"] - z)
    ty, tx = b["thigh"]
    out = trunk
    for s in (1, -1):
        u, v = (x - s * (hw + 36 * S)) / tx, (y - 10 * S) / ty
        rho = np.sqrt(u * u + v * v) + 1e-6
        d = (rho - 1.0) / (np.sqrt((u / tx) ** 2 + (v / ty) ** 2) / rho + 1e-6)
        out = smin(out, np.maximum(d, z - b["perineum_z"] - 40 * S), 25.0)
    return out.astype(np.float32)
