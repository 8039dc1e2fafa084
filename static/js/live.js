// The live connection of a study page: /ws/studies/<id>/ (studies/consumers.py,
// docs/events.md).
//
//   const connection = connectStudy(studyId, {onSnapshot, onEvent, onStatus});
//   connection.close();
//
// onSnapshot(progress, {initial})  the progress snapshot: first on each (re)connect
//                                  (initial: true), and again whenever the server sends
//                                  one (study.progress events, or the polled snapshot of
//                                  a server without Redis)
// onEvent(event)                   every other event, as published (study.status,
//                                  trial.queued, trial.started, trial.progress,
//                                  trial.epoch, trial.finished, study.finished)
// onStatus(state, detail)          "connecting", "open", "reconnecting" (detail: seconds
//                                  until the next try), "closed" (detail: why; no retry)
//
// A lost connection is retried with exponential backoff (1 s doubling to 30 s, with
// jitter); each new connection starts with a fresh snapshot, so nothing missed while away
// is lost. Close codes 4401 (not signed in) and 4404 (no such study) are final.

const FIRST_DELAY_S = 1;
const MAX_DELAY_S = 30;
const FINAL_CODES = { 4401: "You are signed out: reload the page to sign in again.", 4404: "This study is gone or no longer yours." };

export function studySocketUrl(studyId) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws/studies/${studyId}/`;
}

export function connectStudy(studyId, { onSnapshot = () => {}, onEvent = () => {}, onStatus = () => {} } = {}) {
  let socket = null;
  let timer = null;
  let delay = FIRST_DELAY_S;
  let closed = false;
  let sawSnapshot = false;

  function open() {
    if (closed) return;
    onStatus("connecting");
    sawSnapshot = false;
    socket = new WebSocket(studySocketUrl(studyId));
    socket.addEventListener("open", () => {
      delay = FIRST_DELAY_S;
      onStatus("open");
    });
    socket.addEventListener("message", (message) => {
      let data;
      try { data = JSON.parse(message.data); } catch { return; }
      if (data.type === "study.snapshot" || data.type === "study.progress") {
        const initial = !sawSnapshot;
        sawSnapshot = true;
        if (data.progress) onSnapshot(data.progress, { initial });
        return;
      }
      onEvent(data);
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      if (closed) return;
      if (FINAL_CODES[event.code]) {
        closed = true;
        onStatus("closed", FINAL_CODES[event.code]);
        return;
      }
      const wait = Math.min(MAX_DELAY_S, delay) * (0.75 + Math.random() * 0.5);
      delay = Math.min(MAX_DELAY_S, delay * 2);
      onStatus("reconnecting", Math.round(wait));
      timer = window.setTimeout(open, wait * 1000);
    });
  }

  open();
  return {
    close() {
      closed = true;
      window.clearTimeout(timer);
      if (socket) socket.close(1000);
    },
  };
}
