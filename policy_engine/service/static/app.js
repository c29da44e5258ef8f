// The review app's only script (no library, no build step; served by the app itself,
// which allows no inline script): the player follows the timeline and the evidence, the
// playhead follows the player (from ?t=, where a search hit opens it), and an uploaded
// rule file fills the dry-run text.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  if (player) {
    // Click a timeline segment, an interval or an evidence frame: the player seeks there.
    document.addEventListener("click", (event) => {
      const target = event.target.closest("[data-seek]");
      if (!target) return;
      player.currentTime = Number(target.dataset.seek);
      player.scrollIntoView({ block: "nearest" });
    });
    // The playhead moves along every timeline with the player.
    const move = () => {
      for (const svg of document.querySelectorAll("svg.timeline[data-end]")) {
        const start = Number(svg.dataset.start), end = Number(svg.dataset.end);
        const share = Math.min(Math.max((player.currentTime - start) / ((end - start) || 1), 0), 1);
        const head = svg.querySelector(".playhead");
        const x = String(150 + 850 * share);
        head.setAttribute("x1", x);
        head.setAttribute("x2", x);
      }
    };
    // Opened at a moment (a search hit links ?t=SECONDS): start the player there.
    const at = Number(new URLSearchParams(window.location.search).get("t"));
    if (at > 0) {
      const seek = () => { player.currentTime = at; };
      if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek, { once: true });
    }
    player.addEventListener("timeupdate", move);
    player.addEventListener("seeked", move);
    player.addEventListener("error", () => {
      const notice = document.getElementById("player-error");
      if (notice) notice.hidden = false;
    });
  }
  // A rule file chosen from disk fills the text to try (nothing is uploaded by itself).
  for (const input of document.querySelectorAll("input[type=file][data-fill]")) {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      if (!file) return;
      file.text().then((text) => { document.getElementById(input.dataset.fill).value = text; });
    });
  }
});
