// A TCP proxy to PostgreSQL that can black-hole traffic mid-session, as a network partition or a
// frozen database host does: nothing is refused or reset, bytes just stop moving.
import net from 'node:net';

export interface StallProxy {
  port: number;
  /** From now on no byte moves on any connection, old or new (new ones are accepted and held). */
  stall(): void;
  /**
   * Bytes move again on connections opened from now on; those held during the stall stay dead
   * (as after a failover: the old TCP sessions never answer again).
   */
  heal(): void;
  /** Connections accepted so far and still open on the client side. */
  open(): number;
  close(): Promise<void>;
}

export async function startStallProxy(target = { host: '127.0.0.1', port: 5432 }): Promise<StallProxy> {
  let stalled = false;
  const sockets = new Set<net.Socket>();
  const frozen = new Set<net.Socket>();
  const upstreams = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (stalled) {
      frozen.add(client);
      client.pause();
      return;
    }
    const upstream = net.connect(target);
    upstreams.add(upstream);
    upstream.on('close', () => upstreams.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on('data', (d) => {
        if (stalled || frozen.has(client)) return; // dropped on the floor
        to.write(d);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      if (frozen.has(client)) return;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    stall() {
      stalled = true;
      for (const s of sockets) frozen.add(s);
    },
    heal() {
      stalled = false;
    },
    open: () => sockets.size,
    close: () =>
      new Promise<void>((r) => {
        // The database's end of a held session goes too: its backend (and any lock it holds) ends.
        for (const s of [...sockets, ...upstreams]) s.destroy();
        server.close(() => r());
      }),
  };
}
