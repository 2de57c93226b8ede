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
  var player = null, started = 0, retry = 0, timer = null, lastTime = -1, sameSince = 0;
  // The gateway ends a response when the broadcaster ended the stream or it stalled 20 s (or
  // on an error): the page asks again, 1 s later, then up to every 10 s while nothing comes,
  // as `oasis watch` itself waits for the broadcaster to start again.
  function again(why) {
    if (timer !== null) { return; }
    var wait = Math.min(10, 1 + 2 * retry);
    retry += 1;
    say(why + ": asking the gateway again in " + wait + " s…");
    timer = setTimeout(function () { timer = null; start(); }, wait * 1000);
  }
  function start() {
    if (player) { player.destroy(); player = null; }
    player = mpegts.createPlayer({ type: "mpegts", isLive: true, url: src }, {
      enableWorker: false, enableStashBuffer: false, lazyLoad: false,
      liveSync: true, liveSyncTargetLatency: LIVE_TARGET, liveSyncMaxLatency: LIVE_MAX,
      liveSyncPlaybackRate: 1.1, autoCleanupSourceBuffer: true,
      autoCleanupMaxBackwardDuration: 30, autoCleanupMinBackwardDuration: 10
    });
    player.on(mpegts.Events.ERROR, function (type, detail, info) {
      again("stopped (" + type + " " + detail + (info && info.msg ? ": " + info.msg : "") + ")");
    });
    player.on(mpegts.Events.LOADING_COMPLETE, function () {
      // the response ended: what is buffered plays out, then the video ends (below)
      var b = video.buffered;
      if (!b.length || b.end(b.length - 1) - video.currentTime < 0.1) { again("the stream ended or stalled"); }
    });
    player.attachMediaElement(video);
    player.load();
    var p = player.play();
    if (p && p.catch) { p.catch(function () { /* autoplay refused: the controls start it */ }); }
    started = performance.now();
    lastTime = -1;
  }
  video.addEventListener("playing", function () { retry = 0; });
  video.addEventListener("ended", function () { again("the stream ended or stalled"); });
  document.getElementById("live").addEventListener("click", function () {
    var b = video.buffered;
    if (b.length) { video.currentTime = Math.max(b.start(b.length - 1), b.end(b.length - 1) - LIVE_TARGET); }
    video.play();
  });
  // what the viewer sees: how far behind the newest frame it plays, and the picture's size
  setInterval(function () {
    if (timer !== null) { return; }  // (waiting to ask again: that message stays)
    var b = video.buffered, now = performance.now();
    if (video.currentTime !== lastTime) { lastTime = video.currentTime; sameSince = now; }
    if (!player || !b.length) { if (now - started > 5000) { say("waiting for the stream…"); } return; }
    if (!video.paused && now - sameSince > 1500) {
      say("waiting for the stream: no new video for " + ((now - sameSince) / 1000).toFixed(0) + " s");
      return;
    }
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
