"""Work-arounds for two console errors whose cause is in viser 1.1.1's web client, not ours.

Sent once to every page before any GUI element (a script viser runs as it arrives). Each one is
scoped to the exact upstream case, so that real errors still reach the console:

- ``Failed to load resource: net::ERR_FILE_NOT_FOUND`` for every GUI image, on every load: the
  docked control panel mounts its elements twice while a page opens, and viser's image element
  (``components/Image.tsx``) revokes its blob URL when the first copy unmounts, while that copy's
  ``<img>`` is still loading it. Revoking blob URLs a few seconds late lets those loads finish;
  the URLs are still freed.
- ``THREE.BufferGeometry.computeBoundingSphere(): Computed radius is NaN`` when splats are shown:
  viser's splat mesh (``Splatting/GaussianSplatsHelpers.ts``) is an instanced quad whose
  "position" attribute has two components per vertex, which three.js's bounding sphere reads as
  three (NaN). The splats are placed by the shader, so that sphere means nothing: for exactly
  this geometry the message is dropped and the sphere made infinite (never culled, never
  computed again). A NaN in any other geometry (our points, lines) is still reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import viser

REVOKE_DELAY_MS = 5000

SHIM_JS = """
if (!window.__dsviewerShims) {
  window.__dsviewerShims = true;
  const revoke = URL.revokeObjectURL.bind(URL);
  URL.revokeObjectURL = (url) => setTimeout(() => revoke(url), REVOKE_DELAY_MS);
  const report = console.error.bind(console);
  console.error = (...args) => {
    const geometry = args[1];
    const position = geometry && geometry.attributes && geometry.attributes.position;
    const splatQuad = typeof args[0] === "string"
      && args[0].startsWith("THREE.BufferGeometry.computeBoundingSphere()")
      && geometry.isInstancedBufferGeometry && position && position.itemSize === 2
      && position.count === 4 && geometry.boundingSphere;
    if (splatQuad) {
      geometry.boundingSphere.center.set(0, 0, 0);
      geometry.boundingSphere.radius = Infinity;
      return;
    }
    report(...args);
  };
}
""".replace("REVOKE_DELAY_MS", str(REVOKE_DELAY_MS))


def install(server: viser.ViserServer) -> None:
    """Queue the shims for every page that connects from now on (before the GUI's elements)."""
    from viser import _messages

    # viser has no public call for a page script; its own plot support sends this message.
    server._websock_server.queue_message(_messages.RunJavascriptMessage(source=SHIM_JS))
