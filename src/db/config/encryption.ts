import { Keyring } from '../../crypto/keyring.js'
import { ConfigError } from '../../errors/index.js'
import { section } from './fields.js'

/**
 * `encryption` and `pagination`: the keyring (checked by `Keyring.from`), and the secrets that sign keyset cursors.
 *
 * @internal
 */
export function parseKeys(
  pagination: unknown,
  encryption: unknown,
): { readonly cursorSecrets: Buffer[] | undefined; readonly keyring: Keyring | undefined } {
  const cursorSecrets = parseCursorSecrets(pagination)
  const keyring = encryption === undefined ? undefined : Keyring.from(encryption)
  // Without secrets of their own, cursors are signed with a secret derived from the encryption keys (the current
  // key's first): rotating the keys rotates it, and cursors signed under a key still on the ring keep verifying.
  if (cursorSecrets === undefined && keyring !== undefined) {
    return { cursorSecrets: keyring.purposeSecrets('pagination-cursors'), keyring }
  }
  return { cursorSecrets, keyring }
}

/** `pagination.cursorSecrets`: base64 secrets of at least 32 bytes each, the signing one first. */
function parseCursorSecrets(value: unknown): Buffer[] | undefined {
  const pagination = section(value, 'pagination', ['cursorSecrets'])
  if (pagination.cursorSecrets === undefined) return undefined
  const list = pagination.cursorSecrets
  if (!Array.isArray(list) || list.length === 0) {
    throw new ConfigError('pagination.cursorSecrets', 'must be a non-empty list of base64 secrets.')
  }
  return list.map((secret: unknown, i) => {
    const bytes = typeof secret === 'string' ? Buffer.from(secret, 'base64') : Buffer.alloc(0)
    if (bytes.length < 32) {
      throw new ConfigError(`pagination.cursorSecrets[${i}]`, 'must be base64 of at least 32 random bytes.')
    }
    return bytes
  })
}
