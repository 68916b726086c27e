"""Offscreen camera rendering (MUJOCO_GL=egl or osmesa), shared across episodes.

Creating a GL context and uploading a model's assets costs ~0.5 s on our CPUs, more than a
whole command-mode episode, while every scene of ours is built with the same asset list
(floor, robot materials, the six letter textures). So renderers are pooled by image size and
asset signature and reused for every compatible model; each frame re-reads the geometry from
the model and data it is given. Shadows, reflections and the skybox are off (3-5x faster).
"""

from __future__ import annotations

import mujoco  # MUJOCO_GL is defaulted to egl in more_policy.sim.__init__
import numpy as np

MAX_GEOMS = 2000


def asset_signature(model: mujoco.MjModel) -> tuple:
    """What a GL context holds of a model: textures, materials, meshes (by count and size)."""
    return (model.ntex, tuple(model.tex_width), tuple(model.tex_height), model.nmat,
            tuple(model.mat_texid.ravel()), model.nmesh, model.nhfield, model.nskin,
            model.nflex, model.vis.global_.offwidth, model.vis.global_.offheight)


class FrameRenderer:
    """One offscreen GL context rendering fixed cameras of compatible models."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int):
        if not (1 <= width <= model.vis.global_.offwidth
                and 1 <= height <= model.vis.global_.offheight):
            raise ValueError(f"image size {width}x{height} exceeds the model's offscreen buffer "
                             f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}")
        self.width, self.height = width, height
        self.signature = asset_signature(model)
        self._gl = mujoco.GLContext(width, height)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=MAX_GEOMS)
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._viewport = mujoco.MjrRect(0, 0, width, height)
        self._pixels = np.empty((height, width, 3), dtype=np.uint8)

    def render(self, model: mujoco.MjModel, data: mujoco.MjData, camera: str) -> np.ndarray:
        """RGB uint8 (height, width, 3) from the named fixed camera."""
        if asset_signature(model) != self.signature:
            raise ValueError("model assets differ from the ones this renderer was made for")
        camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"model has no camera {camera!r}")
        self._gl.make_current()
        self._camera.fixedcamid = camera_id
        mujoco.mjv_updateScene(model, data, self._option, None, self._camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self._scene)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            self._scene.flags[flag] = False
        mujoco.mjr_render(self._viewport, self._scene, self._context)
        mujoco.mjr_readPixels(self._pixels, None, self._viewport, self._context)
        return np.flipud(self._pixels).copy()

    def close(self) -> None:
        if self._context is not None:
            self._gl.make_current()
            self._context.free()
            self._gl.free()
            self._context = None


_POOL: dict[tuple, FrameRenderer] = {}


def render_camera(model: mujoco.MjModel, data: mujoco.MjData, width: int, height: int,
                  camera: str) -> np.ndarray:
    """Render with a pooled renderer for this image size and asset set."""
    key = (width, height, asset_signature(model))
    renderer = _POOL.get(key)
    if renderer is None:
        renderer = _POOL[key] = FrameRenderer(model, width, height)
    return renderer.render(model, data, camera)


def close_all() -> None:
    """Free every pooled GL context."""
    for renderer in _POOL.values():
        renderer.close()
    _POOL.clear()
