// /metrics answers every client that reaches the admin port (probes and Prometheus need it on the
// pod network), and a render walks every stream and proxy on the main thread that serves them:
// 15–20 ms with 10,000 proxies. One client scraping in a loop kept that thread 80 % busy, 16 at
// once all of it. Renders are paced instead of cached: no answer is older than its request. The
// /debug/* views are paced the same way (/debug/proxies of 10,000 proxies: 15 MB, 450 ms).

/** The share of the main thread that back-to-back renders may take at most. */
const MAX_SHARE = 0.25;

/**
 * `render` paced: a request arriving while no render waits to start schedules one, started once the
 * previous one has been followed by three times its own duration of rest (at once when it has);
 * requests arriving before that one starts share it (it starts after they arrived, so what it says
 * is no older than they are). A Prometheus scrape every few seconds never waits.
 */
export function pacedRender(render: () => Promise<string>, now: () => number = () => performance.now()): () => Promise<string> {
  let nextStartMs = -Infinity;
  let waiting: Promise<string> | undefined;

  const run = async (): Promise<string> => {
    waiting = undefined; // arrivals from now on need a render that starts after them
    const t0 = now();
    try {
      return await render();
    } finally {
      const t1 = now();
      nextStartMs = t1 + (t1 - t0) * (1 / MAX_SHARE - 1);
    }
  };

  return () => {
    if (waiting) return waiting;
    const delay = nextStartMs - now();
    if (delay <= 0) return run();
    waiting = new Promise<void>((resolve) => setTimeout(resolve, Math.ceil(delay))).then(run);
    return waiting;
  };
}
