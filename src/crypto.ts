/**
 * `@wincloud/data/crypto`: the encryption primitives under the models' encrypted properties, for values a host
 * handles outside the models. The keyring, AES-256-GCM envelopes bound to a table, column and row, the Fernet codec
 * of Python's `cryptography.fernet`, and blind indexes. Encrypted properties of models need none of this: they are
 * declared on the model and configured with `createDatabase({ encryption })` from `@wincloud/data`.
 *
 * @example
 * ```ts
 * import { decryptValue, encryptValue, Keyring } from '@wincloud/data/crypto'
 *
 * const keyring = Keyring.from({ keys: { k1: process.env.KEY_1! }, current: 'k1' })
 * const place = { table: 'tickets', column: 'note_ciphertext', rowId: '0192f3a0-7c1e-7b2a-9f00-3c4d5e6f7a8b' }
 * const note = decryptValue(keyring, encryptValue(keyring, 'call back after 5pm', place), place)
 * ```
 *
 * @packageDocumentation
 */
export { Keyring } from './crypto/keyring.js'
export type { EncryptionConfig } from './crypto/keyring.js'
export { encryptValue, decryptValue, envelopeKeyId } from './crypto/envelope.js'
export type { EnvelopeContext } from './crypto/envelope.js'
export { fernetEncrypt, fernetDecrypt, fernetKey, isFernetToken } from './crypto/fernet.js'
export { blindIndex } from './crypto/blind-index.js'
export type { BlindIndexOptions, BlindIndexNormalization } from './crypto/blind-index.js'
