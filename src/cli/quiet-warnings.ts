// One Node notice the CLI drops on purpose.

/**
 * grpc-js sends the target's host as the TLS server name even when it is an IP address, and Node
 * then prints DEP0123 ("Setting the TLS ServerName to an IP address is not permitted…") on the
 * first connection of `fetch --server 127.0.0.1:… --ca-file …`: a notice about the library, not
 * about anything the user can change. The server's certificate is still checked against that IP.
 * Every other warning is printed as before.
 */
export function dropIpServerNameNotice(): void {
  const emit = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]): void {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: unknown }).code : rest[1];
    if (code === 'DEP0123') return;
    (emit as (...args: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
}
