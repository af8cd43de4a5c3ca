/** Every `CERTIFICATE` PEM block of a bundle, in order (other blocks and text are ignored). */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}
