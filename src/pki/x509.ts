// @peculiar/x509 needs reflect-metadata loaded first and a WebCrypto provider for key operations.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
