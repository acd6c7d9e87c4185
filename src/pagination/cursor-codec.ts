import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { InvalidCursorError } from '../errors/index.js'

const VERSION = 1
const MAC_BYTES = 16

/**
 * What a cursor is bound to: the model, the query's sort, its filter (shape and values) and the actor. A cursor
 * used with any other binding is refused.
 *
 * @internal
 */
export interface CursorBinding {
  readonly model: string
  readonly sort: string
  readonly filter: string
  readonly actor: string
}

const PAYLOAD = /^[A-Za-z0-9_-]{1,4000}$/
const MAC = /^[A-Za-z0-9_-]{22}$/

/**
 * Opaque, versioned, signed pagination cursors: `base64url(JSON payload).base64url(HMAC-SHA256)`. The payload holds
 * the version and the sort-key values of the row the cursor points at (timestamps as PostgreSQL text, so
 * microseconds survive). The binding (model, sort, filter, actor) is not in the payload: it is part of what the
 * HMAC signs, so a cursor says nothing about the filter, and one used with another binding fails like a forged one.
 * Verification is constant-time and strict about the text; every failure is the same `InvalidCursorError`.
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
    const payload = Buffer.from(JSON.stringify({ v: VERSION, k: values })).toString('base64url')
    return `${payload}.${this.#mac(this.#secrets[0]!, binding, payload).toString('base64url')}`
  }

  decode(cursor: unknown, binding: CursorBinding): unknown[] {
    if (typeof cursor !== 'string' || cursor.length > 4_096) throw new InvalidCursorError()
    const dot = cursor.indexOf('.')
    const payload = cursor.slice(0, dot)
    const macText = cursor.slice(dot + 1)
    // Strict text: only the one spelling the encoder writes verifies.
    if (dot <= 0 || !PAYLOAD.test(payload) || !MAC.test(macText)) throw new InvalidCursorError()
    // Compare the text, not decoded bytes: base64url has other spellings of the same bytes (padding bits).
    const given = Buffer.from(macText, 'latin1')
    const signed = this.#secrets.some((secret) => {
      const expected = Buffer.from(this.#mac(secret, binding, payload).toString('base64url'), 'latin1')
      return given.length === expected.length && timingSafeEqual(given, expected)
    })
    if (!signed) {
      throw new InvalidCursorError('Invalid cursor: it was altered, or it belongs to another sort, filter or user.')
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    } catch {
      throw new InvalidCursorError()
    }
    const { v, k } = (parsed ?? {}) as { v?: unknown; k?: unknown }
    if (v !== VERSION || !Array.isArray(k)) throw new InvalidCursorError()
    return k as unknown[]
  }

  #mac(secret: Buffer, binding: CursorBinding, payload: string): Buffer {
    return createHmac('sha256', secret)
      .update(
        JSON.stringify([
          'wincloud-cursor',
          VERSION,
          binding.model,
          binding.sort,
          binding.filter,
          binding.actor,
          payload,
        ]),
      )
      .digest()
      .subarray(0, MAC_BYTES)
  }
}
