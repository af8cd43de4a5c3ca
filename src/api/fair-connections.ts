// A connection cap for a small HTTP(S) server whose port is open to other hosts (the admin port:
// the kubelet's probes, Prometheus; the bundle endpoint: other zones). node's maxConnections closes
// whatever arrives once the cap is reached, so one client holding the cap (idle sockets, a TLS
// handshake or headers never finished, reopened as the 10 s client timeout drops them) shut the
// liveness probe out (and got the server restarted), or every follower of the bundle endpoint.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server, Socket } from 'node:net';

export interface RoomMade {
  /** The address of the client whose connection was closed. */
  peer: string;
  /** How many connections that client held, the one closed included. */
  peerConnections: number;
  /** Whether the connection closed is the one that just arrived (its client holds the most and had no other idle one). */
  newcomer: boolean;
}

/**
 * Keeps at most `max` connections open on `server` (http or https). One more is let in by closing a
 * connection of the client that holds the most (ties: the one whose first connection is oldest):
 * its oldest with no request in progress (idle, or its handshake or request not complete yet), else
 * its oldest, request and all (a client may otherwise keep every one busy with slow or pipelined
 * requests). The newcomer counts as an idle connection of its own client, so it is the one closed
 * only when its client holds the most and has no other idle one. A probe's fresh connection is thus
 * never the one closed while another client holds as many connections as its own client.
 */
export function capConnectionsFairly(server: Server, max: number, onRoomMade: (e: RoomMade) => void): void {
  interface Conn {
    peer: string;
    inProgress: number;
  }
  /** In the order they arrived: the first one found is the oldest. */
  const conns = new Map<Socket, Conn>();
  /** The same, by the client's address and port: an https request's socket is the TLS one, not the TCP socket seen arriving. */
  const byEndpoint = new Map<string, Conn>();
  const perPeer = new Map<string, number>();
  const endpointOf = (s: Socket) => `${s.remoteAddress}|${s.remotePort}`;

  server.on('connection', (socket: Socket) => {
    const peer = socket.remoteAddress ?? '';
    const endpoint = endpointOf(socket);
    const conn: Conn = { peer, inProgress: 0 };
    conns.set(socket, conn);
    byEndpoint.set(endpoint, conn);
    perPeer.set(peer, (perPeer.get(peer) ?? 0) + 1);
    socket.once('close', () => {
      conns.delete(socket);
      if (byEndpoint.get(endpoint) === conn) byEndpoint.delete(endpoint);
      const left = (perPeer.get(peer) ?? 1) - 1;
      if (left > 0) perPeer.set(peer, left);
      else perPeer.delete(peer);
    });
    if (conns.size <= max) return;
    let holder = '';
    let most = 0;
    for (const c of conns.values()) {
      const n = perPeer.get(c.peer) ?? 0;
      if (n > most) {
        most = n;
        holder = c.peer;
      }
    }
    let victim: Socket | undefined;
    let oldestOfHolder: Socket | undefined;
    for (const [s, c] of conns) {
      if (c.peer !== holder) continue;
      oldestOfHolder ??= s;
      if (c.inProgress === 0) {
        victim = s;
        break;
      }
    }
    victim ??= oldestOfHolder ?? socket;
    const peerOfVictim = conns.get(victim)?.peer ?? peer;
    onRoomMade({ peer: peerOfVictim, peerConnections: perPeer.get(peerOfVictim) ?? 0, newcomer: victim === socket });
    victim.destroy();
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const c = byEndpoint.get(endpointOf(req.socket));
    if (!c) return;
    c.inProgress++;
    res.once('close', () => c.inProgress--);
  });
}
