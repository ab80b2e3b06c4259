// Live state over the controller's SSE streams (/api/events/tasks, /api/events/skalds).
// EventSource sends the HttpOnly cookie on its own. Every event updates the local maps and is then
// handed to the listeners the current view registered; views never poll for status changes.

import { get } from "./api.js";

// The fleet-wide task stream leaves out heartbeats (one per running task per second); a task's
// page opens its own stream with them (watchTask).
const STREAM_QUERY = { tasks: "?types=task_status,task_deleted,task_error,task_exception,task_placement" };

export class Live {
  constructor() {
    this.skalds = new Map(); // id -> skald item (the API's shape, docs/wire-formats.md)
    this.tasks = new Map(); // id -> task view from the stream
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.sources = {};
    this.state = { tasks: "connecting", skalds: "connecting" };
    this.offsetMs = 0; // server clock - browser clock, from event timestamps
  }

  start() {
    this.open("tasks");
    this.open("skalds");
  }

  /** The server's idea of now, in ms. */
  now() {
    return Date.now() + this.offsetMs;
  }

  open(stream) {
    const source = new EventSource(`/api/events/${stream}${STREAM_QUERY[stream] || ""}`);
    this.sources[stream] = source;
    source.onopen = () => this.setState(stream, "live");
    source.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.setState(stream, "live");
      this.handle(stream, event);
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (401, 5xx): find out why before opening it again.
        this.setState(stream, "offline");
        get("/api/auth/session")
          .then((session) => {
            if (session && session.authenticated === false) window.location.assign("/dashboard/login");
          })
          .catch(() => {})
          .finally(() => setTimeout(() => this.open(stream), 3000));
      } else {
        this.setState(stream, "reconnecting"); // EventSource retries by itself
      }
    };
  }

  handle(stream, event) {
    if (typeof event.timestamp === "number") this.offsetMs = event.timestamp - Date.now();
    const data = event.data || {};
    if (event.type === "snapshot") {
      if (stream === "skalds") {
        this.skalds = new Map((data.skalds || []).map((item) => [item.id, item]));
      } else {
        this.tasks = new Map((data.tasks || []).map((item) => [item.id, item]));
      }
    } else if (event.skaldId) {
      if (data.removed) this.skalds.set(event.skaldId, { ...data, status: "offline" });
      else this.skalds.set(event.skaldId, { ...(this.skalds.get(event.skaldId) || {}), ...data });
    } else if (event.taskId) {
      if (event.type === "task_deleted") this.tasks.delete(event.taskId);
      else this.tasks.set(event.taskId, { ...(this.tasks.get(event.taskId) || { id: event.taskId }), ...data });
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(event, stream);
      } catch (err) {
        console.error("live listener failed", err);
      }
    }
  }

  /** listener(event, stream) for every event; returns the function that removes it. */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  setState(stream, state) {
    if (this.state[stream] === state) return;
    this.state[stream] = state;
    for (const listener of this.stateListeners) listener(this.overall());
  }

  overall() {
    const states = Object.values(this.state);
    if (states.every((s) => s === "live")) return "live";
    if (states.some((s) => s === "offline")) return "offline";
    return "reconnecting";
  }

  onState(listener) {
    this.stateListeners.add(listener);
    listener(this.overall());
    return () => this.stateListeners.delete(listener);
  }
}

/** An extra stream of one task's events (the hub then watches it even after it ended). */
export function watchTask(taskId, listener) {
  const source = new EventSource(`/api/events/tasks?taskId=${encodeURIComponent(taskId)}`);
  source.onmessage = (message) => {
    try {
      listener(JSON.parse(message.data));
    } catch (err) {
      console.error("task stream listener failed", err);
    }
  };
  return () => source.close();
}
