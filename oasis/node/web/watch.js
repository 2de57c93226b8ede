// Oasis's web player: plays this gateway's live MPEG-TS (/live/<stream>.ts) in a <video>
// element through Media Source Extensions, transmuxed in the page by mpegts.js (built by the
// set-up from web/package.json; nothing is fetched from anywhere else). The page's own URL,
// /watch/<stream>, names the stream. It keeps near the live edge: the gateway starts a player
// at the newest keyframe (up to a GOP old), and the player catches up by playing a little
// faster while it is more than LIVE_TARGET behind the newest buffered frame.
"use strict";
(function () {
  var LIVE_TARGET = 0.6;   // s behind the newest frame buffered that it aims for
  var LIVE_MAX = 1.5;      // s behind, past which it catches up
  var video = document.getElementById("video");
  var state = document.getElementById("state");
  var m = /^\/watch\/([a-z2-7]{52}\.[a-z0-9_-]{1,32})$/.exec(location.pathname);
  function say(text, bad) {
    state.textContent = text;
    state.className = bad ? "error" : "";
  }
  if (!m) { say("no stream in this address (/watch/<stream-id>)", true); return; }
  var src = "/live/" + m[1] + ".ts";
  document.getElementById("source").textContent = src;
  if (typeof mpegts === "undefined") {
    say("the web player's script was not built on this machine: run `make setup` (it needs npm), " +
        "or play " + location.origin + src + " in a desktop player", true);
    return;
  }
  if (!mpegts.isSupported() || !mpegts.getFeatureList().mseLivePlayback) {
    say("this browser cannot play live video through Media Source Extensions: play " +
        location.origin + src + " in a desktop player (ffplay, mpv, VLC)", true);
    return;
  }
  var player = null, started = 0, restarts = 0;
  function start() {
    if (player) { player.destroy(); }
    player = mpegts.createPlayer({ type: "mpegts", isLive: true, url: src }, {
      enableWorker: false, enableStashBuffer: false, lazyLoad: false,
      liveSync: true, liveSyncTargetLatency: LIVE_TARGET, liveSyncMaxLatency: LIVE_MAX,
      liveSyncPlaybackRate: 1.1, autoCleanupSourceBuffer: true,
      autoCleanupMaxBackwardDuration: 30, autoCleanupMinBackwardDuration: 10
    });
    player.on(mpegts.Events.ERROR, function (type, detail, info) {
      // the gateway ended the response (the stream ended or stalled 20 s) or a network error:
      // try again, a bounded number of times in a row
      if (restarts >= 5) { say("stopped: " + type + " " + detail + (info && info.msg ? " (" + info.msg + ")" : ""), true); return; }
      restarts += 1;
      say("reconnecting (" + detail + ")…");
      setTimeout(start, 1000 * restarts);
    });
    player.attachMediaElement(video);
    player.load();
    var p = player.play();
    if (p && p.catch) { p.catch(function () { /* autoplay refused: the controls start it */ }); }
    started = performance.now();
  }
  video.addEventListener("playing", function () { restarts = 0; });
  document.getElementById("live").addEventListener("click", function () {
    var b = video.buffered;
    if (b.length) { video.currentTime = Math.max(b.start(b.length - 1), b.end(b.length - 1) - LIVE_TARGET); }
    video.play();
  });
  // what the viewer sees: how far behind the newest frame it plays, and the picture's size
  setInterval(function () {
    var b = video.buffered;
    if (!player || !b.length) { if (performance.now() - started > 5000) { say("waiting for the stream…"); } return; }
    var behind = b.end(b.length - 1) - video.currentTime;
    say((video.paused ? "paused" : "live") + " · " + video.videoWidth + "×" + video.videoHeight +
        " · " + behind.toFixed(2) + " s behind the newest frame received");
    // a tab in the background is throttled and falls behind: back to the edge on return
    if (!video.paused && behind > 4 * LIVE_MAX) {
      video.currentTime = b.end(b.length - 1) - LIVE_TARGET;
    }
  }, 500);
  start();
})();
