// Preloaded into a server process under test (with --expose-gc): on request over IPC, runs a full
// GC and reports heap used and the active handles/timers by type.
process.on('message', async (m) => {
  if (m !== 'measure') return;
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
  }
  const resources = {};
  for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] ?? 0) + 1;
  process.send({ heapUsed: process.memoryUsage().heapUsed, resources });
});
