import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { InvalidCursorError } from '../errors.js'

const VERSION = 1
const MAC_BYTES = 16

/**
 * What a cursor is bound to: the query's sort and filter shape-and-values, and the actor. A cursor used with any
 * other binding is refused.
 *
 * @internal
 */
export interface CursorBinding {
  readonly sort: string
  readonly filter: string
  readonly actor: string
}

/** A digest of the binding, so cursors stay short and say nothing about the filter's values. */
function bindingDigest(binding: CursorBinding): string {
  return createHash('sha256')
    .update(`${binding.sort}\u0000${binding.filter}\u0000${binding.actor}`)
    .digest('base64url')
    .slice(0, 16)
}

/**
 * Opaque, versioned, signed pagination cursors: `base64url(JSON payload).base64url(HMAC-SHA256)`. The payload holds
 * the version, a digest of what the cursor is bound to, and the sort-key values of the row it points at
 * (timestamps as PostgreSQL text, so microseconds survive). Verification is constant-time; every failure is the
 * same `InvalidCursorError`.
 *
 * @internal
 */
export class CursorCodec {
  readonly #secrets: readonly Buffer[]

  /** `secrets[0]` signs; every secret verifies (keep the old one during a rotation). */
  constructor(secrets: readonly Buffer[] = [randomBytes(32)]) {
    if (secrets.length === 0) throw new Error('CursorCodec needs a secret')
    this.#secrets = secrets
  }

  encode(binding: CursorBinding, values: readonly unknown[]): string {
    const payload = Buffer.from(JSON.stringify({ v: VERSION, b: bindingDigest(binding), k: values })).toString(
      'base64url',
    )
    return `${payload}.${this.#mac(this.#secrets[0]!, payload).toString('base64url')}`
  }

  decode(cursor: unknown, binding: CursorBinding): unknown[] {
    if (typeof cursor !== 'string' || cursor.length > 4_096) throw new InvalidCursorError()
    const dot = cursor.indexOf('.')
    if (dot <= 0 || dot !== cursor.lastIndexOf('.')) throw new InvalidCursorError()
    const payload = cursor.slice(0, dot)
    const mac = Buffer.from(cursor.slice(dot + 1), 'base64url')
    const signed = this.#secrets.some((secret) => {
      const expected = this.#mac(secret, payload)
      return mac.length === expected.length && timingSafeEqual(mac, expected)
    })
    if (!signed) throw new InvalidCursorError()
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    } catch {
      throw new InvalidCursorError()
    }
    const { v, b, k } = (parsed ?? {}) as { v?: unknown; b?: unknown; k?: unknown }
    if (v !== VERSION || !Array.isArray(k)) throw new InvalidCursorError()
    if (b !== bindingDigest(binding)) {
      throw new InvalidCursorError('This cursor belongs to another sort, filter or user.')
    }
    return k as unknown[]
  }

  #mac(secret: Buffer, payload: string): Buffer {
    return createHmac('sha256', secret).update(`wincloud-cursor.v${VERSION}.${payload}`).digest().subarray(0, MAC_BYTES)
  }
}
