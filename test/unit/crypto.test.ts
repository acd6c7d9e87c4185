import { createHmac, randomBytes } from 'node:crypto'
import { format, inspect } from 'node:util'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { blindIndex, type BlindIndexOptions } from '../../src/crypto/blind-index.js'
import {
  decryptValue,
  encryptValue,
  ENVELOPE_VERSION,
  envelopeKeyId,
  type EnvelopeContext,
} from '../../src/crypto/envelope.js'
import { fernetDecrypt, fernetEncrypt, fernetKey, fernetTimestamp, isFernetToken } from '../../src/crypto/fernet.js'
import { Keyring } from '../../src/crypto/keyring.js'
import { ConfigError, DecryptionError, ValidationError } from '../../src/index.js'
import { runs } from '../helpers/property.js'

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/** Every text form a key could leak in (the unpadded forms are substrings of the padded ones). */
function keyTexts(key: Buffer): string[] {
  return [
    key.toString('base64').replace(/=+$/, ''),
    key.toString('base64url'),
    key.toString('hex'),
    key.toString('hex').toUpperCase(),
  ]
}

/** A key as Python's `Fernet.generate_key()` prints it: URL-safe base64 of 32 bytes, with its padding. */
const pythonShaped = (key: Buffer): string => `${key.toString('base64url')}=`

/** 0xfb bytes encode to `+/v7…` in standard base64 and `-_v7…` in URL-safe base64: both alphabets show. */
const SYMBOLIC_KEY = Buffer.alloc(32, 0xfb)

function caught(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  return undefined
}

function expectNoSecret(texts: readonly string[], secrets: readonly string[]): void {
  for (const text of texts) {
    for (const secret of secrets) {
      if (secret.length > 0) expect(text).not.toContain(secret)
    }
  }
}

/** Asserts `fn` throws a DecryptionError that says only "Decryption failed" and shows none of `secrets`. */
function expectDecryptionFailure(fn: () => unknown, secrets: readonly string[] = []): void {
  const error = caught(fn)
  expect(error).toBeInstanceOf(DecryptionError)
  const e = error as DecryptionError
  expect(e.message).toBe('Decryption failed')
  expect(e.code).toBe('DECRYPTION_FAILED')
  expect(e.cause).toBeUndefined()
  expect(e.toJSON()).toEqual({
    name: 'DecryptionError',
    code: 'DECRYPTION_FAILED',
    message: 'Decryption failed',
    httpStatus: 500,
  })
  expectNoSecret([e.message, JSON.stringify(e), JSON.stringify(e.toJSON()), String(e.stack), inspect(e)], secrets)
}

/** Asserts `fn` throws a ConfigError naming `field` (in `field` and the message) and showing none of `secrets`. */
function expectConfigError(fn: () => unknown, field: string, secrets: readonly string[] = []): void {
  const error = caught(fn)
  expect(error).toBeInstanceOf(ConfigError)
  const e = error as ConfigError
  expect(e.field).toBe(field)
  expect(e.message).toContain(field)
  expectNoSecret([e.message, JSON.stringify(e), String(e.stack), inspect(e)], secrets)
}

const b64 = (key: Buffer): string => key.toString('base64')

/** Flips one bit of a byte string. */
function flipBit(bytes: Buffer, bit: number): Buffer {
  const copy = Buffer.from(bytes)
  copy[bit >> 3]! ^= 1 << (bit & 7)
  return copy
}

/** A base64url text that decodes to the same bytes but is not canonical (other unused low bits in its last char). */
function nonCanonical(text: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const last = text.at(-1)!
  const other = alphabet[alphabet.indexOf(last) ^ 1]!
  const altered = text.slice(0, -1) + other
  expect(Buffer.from(altered, 'base64url')).toEqual(Buffer.from(text, 'base64url'))
  return altered
}

// ---------------------------------------------------------------------------------------------------------------
// Keyring
// ---------------------------------------------------------------------------------------------------------------

describe('Keyring.from', () => {
  it('accepts standard and URL-safe base64 keys, with and without padding, as the same bytes', () => {
    const standard = SYMBOLIC_KEY.toString('base64')
    const urlSafe = SYMBOLIC_KEY.toString('base64url')
    expect(standard).toMatch(/[+/]/)
    expect(urlSafe).toMatch(/[-_]/)
    const forms = [standard, standard.replace(/=+$/, ''), `${urlSafe}=`, urlSafe]
    expect(new Set(forms).size).toBe(4)
    const reference = Keyring.from({ keys: { k1: standard }, current: 'k1' }).columnKey('k1', 't', 'c')
    for (const form of forms) {
      const ring = Keyring.from({ keys: { k1: form }, current: 'k1' })
      expect(ring.currentKeyId).toBe('k1')
      expect(ring.columnKey('k1', 't', 'c')).toEqual(reference)
    }
  })

  it('builds a full ring: several keys, a current one, a blind-index key and legacy Fernet keys', () => {
    const [k1, k2, bidx, f1, f2] = Array.from({ length: 5 }, () => randomBytes(32))
    const ring = Keyring.from({
      keys: { k2025: b64(k1!), 'k_2026-b': k2!.toString('base64url') },
      current: 'k_2026-b',
      blindIndexKey: b64(bidx!),
      legacyFernetKeys: [pythonShaped(f1!), pythonShaped(f2!)],
    })
    expect(ring.currentKeyId).toBe('k_2026-b')
    expect(ring.keyIds).toEqual(['k2025', 'k_2026-b'])
    expect(ring.has('k2025')).toBe(true)
    expect(ring.has('k2027')).toBe(false)
    expect(ring.fernetKeys()).toEqual([f1, f2])
    expect(ring.blindIndexKey('t', 'c')).toHaveLength(32)
  })

  it('accepts key ids of 1 and 64 characters', () => {
    const id64 = 'a'.repeat(64)
    const ring = Keyring.from({ keys: { x: b64(randomBytes(32)), [id64]: b64(randomBytes(32)) }, current: id64 })
    expect(ring.keyIds).toEqual(['x', id64])
  })

  const good = b64(randomBytes(32))
  const short = b64(randomBytes(16))
  const long = b64(randomBytes(33))
  const dup = randomBytes(32)
  const cases: [string, unknown, string, string[]][] = [
    ['a 16-byte key', { keys: { k1: short }, current: 'k1' }, 'encryption.keys.k1', [short]],
    ['a 33-byte key', { keys: { k1: long }, current: 'k1' }, 'encryption.keys.k1', [long]],
    ['a 31-byte key', { keys: { ok: good, k1: b64(randomBytes(31)) }, current: 'ok' }, 'encryption.keys.k1', [good]],
    [
      'a key that is not base64',
      { keys: { k1: 'not*base64!secret-words' }, current: 'k1' },
      'encryption.keys.k1',
      ['secret-words'],
    ],
    ['a key that is hex', { keys: { k1: randomBytes(32).toString('hex') }, current: 'k1' }, 'encryption.keys.k1', []],
    ['a key that is a number', { keys: { k1: 42 }, current: 'k1' }, 'encryption.keys.k1', []],
    ['a key that is bytes', { keys: { k1: randomBytes(32) }, current: 'k1' }, 'encryption.keys.k1', []],
    ['a key id with a dot', { keys: { 'a.b': good }, current: 'a.b' }, 'encryption.keys', [good]],
    ['an empty key id', { keys: { '': good }, current: '' }, 'encryption.keys', [good]],
    [
      'a key id of 65 characters',
      { keys: { ['a'.repeat(65)]: good }, current: 'a'.repeat(65) },
      'encryption.keys',
      [good],
    ],
    ['a key id with a space', { keys: { 'k 1': good }, current: 'k 1' }, 'encryption.keys', [good]],
    ['no keys', { current: 'k1' }, 'encryption.keys', []],
    ['empty keys', { keys: {}, current: 'k1' }, 'encryption.keys', []],
    ['keys as a list', { keys: [good], current: '0' }, 'encryption.keys', [good]],
    ['keys as a string', { keys: good, current: 'k1' }, 'encryption.keys', [good]],
    ['a current id that is not among the keys', { keys: { k1: good }, current: 'k2' }, 'encryption.current', [good]],
    ['no current id', { keys: { k1: good } }, 'encryption.current', [good]],
    ['a current id that is not a string', { keys: { k1: good }, current: 1 }, 'encryption.current', [good]],
    [
      'the same key bytes under two ids (standard and URL-safe text)',
      { keys: { a: b64(dup), b: dup.toString('base64url') }, current: 'a' },
      'encryption.keys.b',
      keyTexts(dup),
    ],
    [
      'a 16-byte blind-index key',
      { keys: { k1: good }, current: 'k1', blindIndexKey: short },
      'encryption.blindIndexKey',
      [short, good],
    ],
    [
      'a blind-index key that is not base64',
      { keys: { k1: good }, current: 'k1', blindIndexKey: '%%%%' },
      'encryption.blindIndexKey',
      [good],
    ],
    [
      'a blind-index key that is null',
      { keys: { k1: good }, current: 'k1', blindIndexKey: null },
      'encryption.blindIndexKey',
      [good],
    ],
    [
      'a bad second legacy Fernet key',
      { keys: { k1: good }, current: 'k1', legacyFernetKeys: [pythonShaped(dup), short] },
      'encryption.legacyFernetKeys[1]',
      [short, good, ...keyTexts(dup)],
    ],
    [
      'a bad first legacy Fernet key',
      { keys: { k1: good }, current: 'k1', legacyFernetKeys: [long] },
      'encryption.legacyFernetKeys[0]',
      [long, good],
    ],
    [
      'legacy Fernet keys that are not a list',
      { keys: { k1: good }, current: 'k1', legacyFernetKeys: pythonShaped(dup) },
      'encryption.legacyFernetKeys',
      [good, ...keyTexts(dup)],
    ],
    ['an unknown option', { keys: { k1: good }, current: 'k1', currentKey: 'k1' }, 'encryption.currentKey', [good]],
    [
      'a misspelled option',
      { keys: { k1: good }, current: 'k1', blindindexKey: good },
      'encryption.blindindexKey',
      [good],
    ],
    ['null', null, 'encryption', []],
    ['undefined', undefined, 'encryption', []],
    ['a string', good, 'encryption', [good]],
    ['a number', 42, 'encryption', []],
    ['a list', [good], 'encryption', [good]],
  ]
  it.each(cases)(
    'refuses %s with a ConfigError naming the field, without the key text',
    (_, config, field, secrets) => {
      expectConfigError(() => Keyring.from(config), field, secrets)
    },
  )

  it('never shows key bytes in util.inspect, JSON.stringify, String() or console.log formatting', () => {
    const keys = Array.from({ length: 6 }, () => randomBytes(32))
    const [k1, k2, bidx, f1, f2, oldBidx] = keys as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer]
    const ring = Keyring.from({
      keys: { alpha: b64(k1), beta: k2.toString('base64url') },
      current: 'beta',
      blindIndexKey: b64(bidx),
      previousBlindIndexKeys: [b64(oldBidx)],
      legacyFernetKeys: [pythonShaped(f1), pythonShaped(f2)],
    })
    // Fill the sub-key cache, so derived keys would show too if anything printed it.
    const derived = [
      ring.columnKey('alpha', 'users', 'email')!,
      ring.blindIndexKey('users', 'email_bidx')!,
      ring.blindIndexKey('users', 'email_bidx', 1)!,
    ]
    const secrets = [...keys, ...derived].flatMap(keyTexts)
    const shown = {
      inspect: inspect(ring),
      inspectDeep: inspect(ring, { showHidden: true, depth: Infinity, getters: true }),
      inspectRaw: inspect(ring, { showHidden: true, depth: Infinity, customInspect: false }),
      inspectNested: inspect({ config: { ring } }, { depth: Infinity }),
      json: JSON.stringify(ring),
      jsonNested: JSON.stringify({ ring }),
      string: String(ring),
      // eslint-disable-next-line @typescript-eslint/restrict-template-expressions -- as a careless log line would
      template: `${ring}`,
      format: format(ring),
      formatSpecifiers: format('%s %o %O %j', ring, ring, ring, ring),
      spread: inspect({ ...ring }, { showHidden: true }),
    }
    for (const text of Object.values(shown)) {
      expect(text).toContain('alpha')
      expect(text).toContain('beta')
    }
    expectNoSecret(Object.values(shown), secrets)
    expect(JSON.parse(shown.json)).toEqual({
      current: 'beta',
      keys: ['alpha', 'beta'],
      blindIndex: true,
      previousBlindIndexKeys: 1,
      fernetKeys: 2,
    })
  })

  describe('columnKey', () => {
    const k1 = randomBytes(32)
    const k2 = randomBytes(32)
    const config = { keys: { k1: b64(k1), k2: b64(k2) }, current: 'k1' }
    const ring = Keyring.from(config)

    it('is 32 bytes, and stable across calls and across rings built from the same config', () => {
      const key = ring.columnKey('k1', 'users', 'email')!
      expect(Buffer.isBuffer(key)).toBe(true)
      expect(key).toHaveLength(32)
      expect(ring.columnKey('k1', 'users', 'email')).toEqual(key)
      expect(Keyring.from(config).columnKey('k1', 'users', 'email')).toEqual(key)
    })

    it('differs per table, per column and per key id, and is never the master key', () => {
      const derived = [
        ring.columnKey('k1', 'users', 'email')!,
        ring.columnKey('k1', 'droplets', 'email')!,
        ring.columnKey('k1', 'users', 'phone')!,
        ring.columnKey('k2', 'users', 'email')!,
        // No ambiguity in how table and column are joined.
        ring.columnKey('k1', 'users.e', 'mail')!,
        ring.columnKey('k1', 'users', '.email')!,
        ring.columnKey('k1', 'usersemail', '')!,
        ring.columnKey('k1', 'email', 'users')!,
      ]
      const texts = derived.map((key) => key.toString('hex'))
      expect(new Set(texts).size).toBe(derived.length)
      expect(texts).not.toContain(k1.toString('hex'))
      expect(texts).not.toContain(k2.toString('hex'))
    })

    it('keeps table and column apart even when their names hold a NUL character', () => {
      // Asked in this order on a fresh ring, a cache keyed by `table + NUL + column` hands the first key to both.
      const fresh = Keyring.from(config)
      const first = fresh.columnKey('k1', 'a\u0000b', 'c')!
      const second = fresh.columnKey('k1', 'a', 'b\u0000c')!
      expect(second.toString('hex')).not.toBe(first.toString('hex'))
      expect(second).toEqual(Keyring.from(config).columnKey('k1', 'a', 'b\u0000c'))
    })

    it('is undefined for an unknown key id', () => {
      expect(ring.columnKey('k3', 'users', 'email')).toBeUndefined()
    })

    it('leaves blindIndexKey undefined without a blind-index key', () => {
      expect(ring.blindIndexKey('users', 'email')).toBeUndefined()
      expect(ring.fernetKeys()).toEqual([])
    })
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------------------------

describe('envelope encryption', () => {
  const k1 = randomBytes(32)
  const k2 = randomBytes(32)
  const ring = Keyring.from({ keys: { k1: b64(k1) }, current: 'k1' })
  const keySecrets = [k1, k2].flatMap(keyTexts)
  const ctx: EnvelopeContext = {
    table: 'droplets',
    column: 'admin_password_ciphertext',
    rowId: '0b7d5c9e-0000-4000-8000-000000000001',
  }
  const secret = 'Pa55-w0rd! correct horse battery staple'
  const secrets = [secret, ...keySecrets]
  const ENVELOPE = /^v1\.([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]+)$/

  function parts(envelope: string): { keyId: string; nonce: Buffer; sealed: Buffer } {
    const match = ENVELOPE.exec(envelope)
    expect(match).not.toBeNull()
    return {
      keyId: match![1]!,
      nonce: Buffer.from(match![2]!, 'base64url'),
      sealed: Buffer.from(match![3]!, 'base64url'),
    }
  }

  const assemble = (keyId: string, nonce: Buffer, sealed: Buffer): string =>
    `v1.${keyId}.${nonce.toString('base64url')}.${sealed.toString('base64url')}`

  describe('round trips', () => {
    it.each([
      ['an empty string', ''],
      ['a password', secret],
      ['unicode', 'пароль 密码 🔐 Ünïcödé \u0000 \t\n'],
      ['a decomposed accent (not normalized)', 'e\u0301'],
      ['text that looks like JSON', '{"a":1}'],
      ['the string "null"', 'null'],
      ['the string "42"', '42'],
    ])('%s', (_, value) => {
      const envelope = encryptValue(ring, value, ctx)
      expect(decryptValue(ring, envelope, ctx)).toBe(value)
    })

    it('a 1 MiB string', () => {
      const value = randomBytes(786_432).toString('base64')
      expect(value).toHaveLength(1 << 20)
      const envelope = encryptValue(ring, value, ctx)
      expect(decryptValue(ring, envelope, ctx)).toBe(value)
    })

    it.each([
      ['an object', { user: 'ada', tags: ['x', 'y'], n: 1 }],
      ['an array', [1, 'two', { three: 3 }, null, true]],
      ['an empty object', {}],
      ['an empty array', []],
      ['zero', 0],
      ['a negative float', -1.5],
      ['a large number', 1e300],
      ['true', true],
      ['false', false],
      ['nested values', { a: { b: { c: [[[{ d: 'deep 🔐' }]]] } }, list: [{ x: null }] }],
    ])('%s as JSON, keeping its type', (_, value) => {
      const back = decryptValue(ring, encryptValue(ring, value, ctx), ctx)
      expect(back).toStrictEqual(value)
    })

    it('any string (property)', () => {
      fc.assert(
        fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' })), (value) => {
          expect(decryptValue(ring, encryptValue(ring, value, ctx), ctx)).toBe(value)
        }),
        { numRuns: runs(300) },
      )
    })

    it('any JSON value (property)', () => {
      fc.assert(
        fc.property(fc.jsonValue(), (value) => {
          const envelope = encryptValue(ring, value, ctx)
          if (value === null) expect(envelope).toBeNull()
          else expect(decryptValue(ring, envelope, ctx)).toStrictEqual(JSON.parse(JSON.stringify(value)))
        }),
        { numRuns: runs(300) },
      )
    })

    it('leaves null and undefined as null', () => {
      expect(encryptValue(ring, null, ctx)).toBeNull()
      expect(encryptValue(ring, undefined, ctx)).toBeNull()
    })

    it('turns undefined inside arrays into null, and drops undefined properties, as JSON does', () => {
      expect(decryptValue(ring, encryptValue(ring, [1, undefined, 'x'], ctx), ctx)).toEqual([1, null, 'x'])
      expect(decryptValue(ring, encryptValue(ring, { a: 1, b: undefined }, ctx), ctx)).toStrictEqual({ a: 1 })
    })

    it('never silently changes a string with a lone surrogate (it round-trips or is refused)', () => {
      for (const value of ['a\uD800b', '\uDC00', 'end \uD83D']) {
        let back: unknown
        const error = caught(() => (back = decryptValue(ring, encryptValue(ring, value, ctx), ctx)))
        if (error === undefined) expect(back).toBe(value)
        else expect(error).toBeInstanceOf(ValidationError)
      }
    })
  })

  describe('format', () => {
    it('is v1.<keyId>.<16 base64url chars>.<base64url>, with a 12-byte nonce and no plaintext', () => {
      const envelope = encryptValue(ring, secret, ctx)
      expect(envelope.startsWith(`${ENVELOPE_VERSION}.k1.`)).toBe(true)
      expect(envelope).toMatch(ENVELOPE)
      const { keyId, nonce, sealed } = parts(envelope)
      expect(keyId).toBe('k1')
      expect(nonce).toHaveLength(12)
      expect(sealed.length).toBeGreaterThan(16 + Buffer.byteLength(secret))
      expectNoSecret([envelope], secrets)
    })

    it('uses a fresh nonce: two encryptions of one value differ', () => {
      const envelopes = Array.from({ length: 20 }, () => encryptValue(ring, secret, ctx))
      expect(new Set(envelopes).size).toBe(20)
      expect(new Set(envelopes.map((e) => parts(e).nonce.toString('hex'))).size).toBe(20)
      for (const envelope of envelopes) expect(decryptValue(ring, envelope, ctx)).toBe(secret)
    })

    it('envelopeKeyId names the key, and is undefined for anything else', () => {
      expect(envelopeKeyId(encryptValue(ring, 'x', ctx))).toBe('k1')
      const fernet = fernetEncrypt(randomBytes(32), Buffer.from('x'))
      for (const text of ['', 'hello', 'v1.k1', fernet, 'v2.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA']) {
        expect(envelopeKeyId(text)).toBeUndefined()
      }
    })
  })

  describe('refuses, always with DecryptionError', () => {
    const envelope = encryptValue(ring, secret, ctx)

    it.each([
      ['another rowId', { ...ctx, rowId: '0b7d5c9e-0000-4000-8000-000000000002' }],
      ['another column', { ...ctx, column: 'root_password_ciphertext' }],
      ['another table', { ...ctx, table: 'servers' }],
      ['a rowId that differs by case', { ...ctx, rowId: ctx.rowId.toUpperCase() }],
    ])('%s', (_, other) => {
      expectDecryptionFailure(() => decryptValue(ring, envelope, other), secrets)
    })

    it('a value encrypted for row A pasted into row B', () => {
      const rowA = { ...ctx, rowId: 'row-a' }
      const rowB = { ...ctx, rowId: 'row-b' }
      const stored = { a: encryptValue(ring, 'secret of A', rowA), b: encryptValue(ring, 'secret of B', rowB) }
      expect(decryptValue(ring, stored.a, rowA)).toBe('secret of A')
      expect(decryptValue(ring, stored.b, rowB)).toBe('secret of B')
      stored.b = stored.a
      expectDecryptionFailure(() => decryptValue(ring, stored.b, rowB), ['secret of A', 'secret of B', ...keySecrets])
    })

    it('every single-bit flip of the nonce and of the ciphertext', () => {
      const short = encryptValue(ring, 'short secret', ctx)
      const { keyId, nonce, sealed } = parts(short)
      for (let bit = 0; bit < nonce.length * 8; bit++) {
        expectDecryptionFailure(() => decryptValue(ring, assemble(keyId, flipBit(nonce, bit), sealed), ctx))
      }
      for (let bit = 0; bit < sealed.length * 8; bit++) {
        expectDecryptionFailure(() => decryptValue(ring, assemble(keyId, nonce, flipBit(sealed, bit)), ctx))
      }
    })

    it('a random single-bit flip of any value (property)', () => {
      fc.assert(
        fc.property(fc.string(), fc.boolean(), fc.nat(), (value, inNonce, n) => {
          const { keyId, nonce, sealed } = parts(encryptValue(ring, value, ctx))
          const tampered = inNonce
            ? assemble(keyId, flipBit(nonce, n % (nonce.length * 8)), sealed)
            : assemble(keyId, nonce, flipBit(sealed, n % (sealed.length * 8)))
          expectDecryptionFailure(() => decryptValue(ring, tampered, ctx))
        }),
        { numRuns: runs(300) },
      )
    })

    it('a non-canonical base64url spelling of the same ciphertext bytes', () => {
      const { keyId, nonce, sealed } = parts(envelope)
      const sealedText = sealed.toString('base64url')
      expect(sealedText.length % 4).not.toBe(0) // so the last character has unused bits
      const spelled = `v1.${keyId}.${nonce.toString('base64url')}.${nonCanonical(sealedText)}`
      expectDecryptionFailure(() => decryptValue(ring, spelled, ctx), secrets)
    })

    it('truncation at every length, and anything appended', () => {
      for (let length = 0; length < envelope.length; length++) {
        expectDecryptionFailure(() => decryptValue(ring, envelope.slice(0, length), ctx), secrets)
      }
      for (const tail of ['A', 'AAAA', '=', '.', ' ', '\n']) {
        expectDecryptionFailure(() => decryptValue(ring, envelope + tail, ctx), secrets)
      }
    })

    it('an unknown key id, or another id of the ring', () => {
      const renamed = envelope.replace(/^v1\.k1\./, 'v1.k9.')
      expectDecryptionFailure(() => decryptValue(ring, renamed, ctx), secrets)
      const both = Keyring.from({ keys: { k1: b64(k1), k9: b64(k2) }, current: 'k1' })
      expect(decryptValue(both, envelope, ctx)).toBe(secret)
      expectDecryptionFailure(() => decryptValue(both, renamed, ctx), secrets)
      // Even when k9 holds the very same key: the key id is authenticated too.
      const alias = Keyring.from({ keys: { k9: b64(k1) }, current: 'k9' })
      expectDecryptionFailure(() => decryptValue(alias, renamed, ctx), secrets)
    })

    it('another table and column whose names join to the same text (with a NUL character)', () => {
      const fresh = Keyring.from({ keys: { k1: b64(k1) }, current: 'k1' })
      const stored = encryptValue(fresh, secret, { table: 'a\u0000b', column: 'c', rowId: 'r' })
      expectDecryptionFailure(
        () => decryptValue(fresh, stored, { table: 'a', column: 'b\u0000c', rowId: 'r' }),
        secrets,
      )
    })

    it('a keyring with the same id but another key', () => {
      const other = Keyring.from({ keys: { k1: b64(k2) }, current: 'k1' })
      expectDecryptionFailure(() => decryptValue(other, envelope, ctx), secrets)
    })

    it('a keyring without that id', () => {
      const other = Keyring.from({ keys: { k2: b64(k2) }, current: 'k2' })
      expectDecryptionFailure(() => decryptValue(other, envelope, ctx), secrets)
    })

    it.each([
      ['an empty string', ''],
      ['a word', 'hello'],
      ['the version alone', 'v1'],
      ['empty parts', 'v1...'],
      ['another version', envelope.replace(/^v1\./, 'v2.')],
      ['an upper-case version', envelope.replace(/^v1\./, 'V1.')],
      ['spaces around it', ` ${envelope} `],
      ['standard base64 characters', envelope.replace(/-/g, '+').replace(/_/g, '/') + '+/'],
      ['padding', `${envelope}==`],
      ['JSON', '{"v":1}'],
      ['a Fernet token', fernetEncrypt(k1, Buffer.from(secret))],
      ['a very long garbage string', 'v1.k1.AAAAAAAAAAAAAAAA.' + 'A'.repeat(100_000)],
    ])('garbage: %s', (_, text) => {
      expectDecryptionFailure(() => decryptValue(ring, text, ctx), secrets)
    })

    it.each([
      ['null', null],
      ['undefined', undefined],
      ['a number', 42],
      ['an object', {}],
      ['bytes of an envelope', Buffer.from(envelope)],
      ['a list holding an envelope', [envelope]],
      ['an object whose toString is an envelope', { toString: () => envelope }],
    ])('non-strings: %s', (_, value) => {
      expectDecryptionFailure(() => decryptValue(ring, value as string, ctx), secrets)
    })
  })

  it('keeps old values readable after rotation, and encrypts new ones under the new current key', () => {
    const before = Keyring.from({ keys: { k1: b64(k1), k2: b64(k2) }, current: 'k1' })
    const old = encryptValue(before, secret, ctx)
    expect(envelopeKeyId(old)).toBe('k1')
    const after = Keyring.from({ keys: { k1: b64(k1), k2: b64(k2) }, current: 'k2' })
    expect(decryptValue(after, old, ctx)).toBe(secret)
    const fresh = encryptValue(after, secret, ctx)
    expect(envelopeKeyId(fresh)).toBe('k2')
    expect(decryptValue(after, fresh, ctx)).toBe(secret)
    expect(decryptValue(before, fresh, ctx)).toBe(secret)
    // Once k1 is retired, its values no longer open.
    const retired = Keyring.from({ keys: { k2: b64(k2) }, current: 'k2' })
    expect(decryptValue(retired, fresh, ctx)).toBe(secret)
    expectDecryptionFailure(() => decryptValue(retired, old, ctx), secrets)
  })

  describe('refuses values that are not strings or JSON with a ValidationError', () => {
    const circular: Record<string, unknown> = { name: 'loop' }
    circular.self = circular
    it.each([
      ['a function', () => 'x'],
      ['a symbol', Symbol('s')],
      ['a bigint', 10n],
      ['an object that refers to itself', circular],
    ])('%s', (_, value) => {
      const error = caught(() => encryptValue(ring, value, ctx))
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as ValidationError).details.map((d) => d.field)).toEqual([ctx.column])
    })

    it.each(['table', 'column', 'rowId'] as const)('and a context without its %s', (field) => {
      const error = caught(() => encryptValue(ring, 'x', { ...ctx, [field]: '' }))
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as ValidationError).details.map((d) => d.field)).toEqual([field])
    })
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Blind index
// ---------------------------------------------------------------------------------------------------------------

describe('blindIndex', () => {
  const bidx = randomBytes(32)
  const config = { keys: { k1: b64(randomBytes(32)) }, current: 'k1', blindIndexKey: b64(bidx) }
  const ring = Keyring.from(config)
  const BASE64URL = /^[A-Za-z0-9_-]+$/

  it('is deterministic, across calls and across rings with the same blind-index key', () => {
    const index = blindIndex(ring, 'users', 'email_bidx', 'ada@example.com')
    expect(index).toMatch(BASE64URL)
    expect(blindIndex(ring, 'users', 'email_bidx', 'ada@example.com')).toBe(index)
    expect(blindIndex(Keyring.from(config), 'users', 'email_bidx', 'ada@example.com')).toBe(index)
    // Rotating the encryption keys does not change lookups.
    const rotated = Keyring.from({ ...config, keys: { k2: b64(randomBytes(32)) }, current: 'k2' })
    expect(blindIndex(rotated, 'users', 'email_bidx', 'ada@example.com')).toBe(index)
    expect(index).not.toContain('ada')
  })

  it('differs per table, per column and per value', () => {
    const indexes = [
      blindIndex(ring, 'users', 'email_bidx', 'ada@example.com'),
      blindIndex(ring, 'admins', 'email_bidx', 'ada@example.com'),
      blindIndex(ring, 'users', 'backup_email_bidx', 'ada@example.com'),
      blindIndex(ring, 'users', 'email_bidx', 'ada@example.org'),
      blindIndex(ring, 'users', 'email_bidx', ''),
    ]
    expect(new Set(indexes).size).toBe(indexes.length)
  })

  it('keeps table and column apart even when their names hold a NUL character', () => {
    const fresh = Keyring.from(config)
    const first = blindIndex(fresh, 'a\u0000b', 'c', 'ada@example.com')
    expect(blindIndex(fresh, 'a', 'b\u0000c', 'ada@example.com')).not.toBe(first)
  })

  it('differs for different blind-index keys', () => {
    const other = Keyring.from({ ...config, blindIndexKey: b64(randomBytes(32)) })
    expect(blindIndex(other, 'users', 'email_bidx', 'ada@example.com')).not.toBe(
      blindIndex(ring, 'users', 'email_bidx', 'ada@example.com'),
    )
  })

  it('distinct values give distinct indexes (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (a, b) => {
        fc.pre(a.normalize('NFC') !== b.normalize('NFC'))
        expect(blindIndex(ring, 't', 'c', a)).not.toBe(blindIndex(ring, 't', 'c', b))
      }),
      { numRuns: runs(200) },
    )
  })

  const idx = (value: string, options?: BlindIndexOptions): string =>
    blindIndex(ring, 'users', 'email_bidx', value, options)

  it("does not normalize case or spaces by default ('none')", () => {
    expect(idx('Ada@Example.com')).not.toBe(idx('ada@example.com'))
    expect(idx(' ada@example.com')).not.toBe(idx('ada@example.com'))
    expect(idx('Ada', { normalize: 'none' })).toBe(idx('Ada'))
  })

  it("normalizes with 'lowercase', 'trim' and 'trim-lowercase'", () => {
    expect(idx('Ada@Example.COM', { normalize: 'lowercase' })).toBe(idx('ada@example.com', { normalize: 'lowercase' }))
    expect(idx(' ada', { normalize: 'lowercase' })).not.toBe(idx('ada', { normalize: 'lowercase' }))
    expect(idx(' \tada@example.com\n', { normalize: 'trim' })).toBe(idx('ada@example.com', { normalize: 'trim' }))
    expect(idx('Ada', { normalize: 'trim' })).not.toBe(idx('ada', { normalize: 'trim' }))
    const email = idx('ada@example.com', { normalize: 'trim-lowercase' })
    expect(idx('  Ada@Example.COM \n', { normalize: 'trim-lowercase' })).toBe(email)
    // The normalized value is what is indexed.
    expect(email).toBe(idx('ada@example.com'))
    expect(idx(' ADA ', { normalize: 'trim-lowercase' })).toBe(idx('ada'))
  })

  it('normalizes with a function', () => {
    const digits = { normalize: (v: string) => v.replace(/\D/g, '') }
    expect(idx('+1 (555) 010-9999', digits)).toBe(idx('15550109999', digits))
    expect(idx('+1 (555) 010-9999', digits)).toBe(idx('15550109999'))
    expect(idx('+1 (555) 010-9998', digits)).not.toBe(idx('15550109999', digits))
  })

  it('applies Unicode NFC: composed and decomposed accents give the same index', () => {
    expect('\u00e9').not.toBe('e\u0301')
    expect(idx('\u00e9')).toBe(idx('e\u0301'))
    expect(idx('Jos\u00e9')).toBe(idx('Jose\u0301'))
    expect(idx('JOS\u00c9', { normalize: 'lowercase' })).toBe(idx('jose\u0301'))
    expect(idx('\u00c5ngstr\u00f6m')).toBe(idx('A\u030angstro\u0308m'))
    expect(idx('\u00e9')).not.toBe(idx('e'))
  })

  it('is base64url of `bytes` bytes, 8 to 32 (16 by default)', () => {
    expect(Buffer.from(idx('x'), 'base64url')).toHaveLength(16)
    expect(idx('x')).toHaveLength(22)
    for (let bytes = 8; bytes <= 32; bytes++) {
      const index = idx('ada@example.com', { bytes })
      expect(index).toMatch(BASE64URL)
      expect(index).toHaveLength(Math.ceil((bytes * 4) / 3))
      expect(Buffer.from(index, 'base64url')).toHaveLength(bytes)
      expect(Buffer.from(index, 'base64url').toString('base64url')).toBe(index)
    }
  })

  it.each([7, 33, 1.5, 0, -16, Number.NaN, Infinity, '16'])('refuses bytes: %s with a ConfigError', (bytes) => {
    expectConfigError(() => idx('x', { bytes: bytes as number }), 'blindIndex.bytes', keyTexts(bidx))
  })

  it('refuses an unknown normalization with a ConfigError', () => {
    expectConfigError(() => idx('x', { normalize: 'upper' as 'none' }), 'blindIndex.normalize', keyTexts(bidx))
  })

  it('needs the blind-index key: without it, a ConfigError', () => {
    const plain = Keyring.from({ keys: { k1: b64(randomBytes(32)) }, current: 'k1' })
    expectConfigError(() => blindIndex(plain, 'users', 'email_bidx', 'ada@example.com'), 'encryption.blindIndexKey')
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Fernet
// ---------------------------------------------------------------------------------------------------------------

describe('Fernet', () => {
  const key = randomBytes(32)
  const other = randomBytes(32)
  const keySecrets = [key, other].flatMap(keyTexts)
  const plaintext = 'legacy secret ✓ from Python'
  const secrets = [plaintext, ...keySecrets]
  const T = new Date('2024-05-01T12:00:00Z')
  const seconds = (s: number): Date => new Date(T.getTime() + s * 1000)

  describe('fernetKey', () => {
    it('accepts a key shaped like Fernet.generate_key()', () => {
      for (const bytes of [key, SYMBOLIC_KEY, Buffer.alloc(32), Buffer.alloc(32, 0xff)]) {
        const text = pythonShaped(bytes)
        expect(text).toMatch(/^[A-Za-z0-9_-]{43}=$/)
        expect(fernetKey(text)).toEqual(bytes)
      }
    })

    it.each([
      ['without its padding', key.toString('base64url')],
      ['in standard base64', SYMBOLIC_KEY.toString('base64')],
      ['of 16 bytes', pythonShaped(randomBytes(16))],
      ['of 31 bytes', `${randomBytes(31).toString('base64url')}=`],
      ['of 33 bytes', randomBytes(33).toString('base64url')],
      ['in hex', key.toString('hex')],
      ['with spaces', ` ${pythonShaped(key)} `],
      ['with a newline', `${pythonShaped(key)}\n`],
      ['with non-canonical last character', `${nonCanonical(key.toString('base64url'))}=`],
      ['with two padding characters', `${key.toString('base64url').slice(0, 42)}==`],
      ['empty', ''],
    ])('rejects a key %s', (_, text) => {
      expect(fernetKey(text)).toBeUndefined()
    })

    it.each([
      ['null', null],
      ['undefined', undefined],
      ['a number', 42],
      ['the key bytes', key],
    ])('rejects a non-string: %s', (_, value) => {
      expect(fernetKey(value as unknown as string)).toBeUndefined()
    })
  })

  describe('tokens', () => {
    it('round-trip', () => {
      for (const text of ['', 'hello', plaintext, 'x'.repeat(15), 'x'.repeat(16), 'x'.repeat(17), '🔐'.repeat(1000)]) {
        const token = fernetEncrypt(key, Buffer.from(text))
        expect(fernetDecrypt([key], token).toString('utf8')).toBe(text)
      }
    })

    it('round-trip any bytes (property)', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
          const token = fernetEncrypt(key, Buffer.from(bytes))
          expect(new Uint8Array(fernetDecrypt([key], token))).toEqual(bytes)
        }),
        { numRuns: runs(200) },
      )
    })

    it('are padded URL-safe base64 starting with gAAAAA', () => {
      for (let length = 0; length < 64; length++) {
        const token = fernetEncrypt(key, randomBytes(length))
        expect(token.startsWith('gAAAAA')).toBe(true)
        expect(token).toMatch(/^[A-Za-z0-9_-]+={0,2}$/)
        expect(token.length % 4).toBe(0)
        const bytes = Buffer.from(token, 'base64url')
        expect(token).toBe(bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_'))
        expect(bytes[0]).toBe(0x80)
        expect((bytes.length - 57) % 16).toBe(0)
      }
      expect(fernetEncrypt(key, Buffer.from('hello')).endsWith('==')).toBe(true)
    })

    it('use a fresh IV: two tokens of one plaintext differ', () => {
      const tokens = Array.from({ length: 20 }, () => fernetEncrypt(key, Buffer.from(plaintext), { now: T }))
      expect(new Set(tokens).size).toBe(20)
    })

    it('take an explicit IV and refuse one that is not 16 bytes', () => {
      const iv = Buffer.alloc(16, 7)
      const a = fernetEncrypt(key, Buffer.from('x'), { now: T, iv })
      expect(fernetEncrypt(key, Buffer.from('x'), { now: T, iv })).toBe(a)
      expect(Buffer.from(a, 'base64url').subarray(9, 25)).toEqual(iv)
      expect(() => fernetEncrypt(key, Buffer.from('x'), { iv: Buffer.alloc(15) })).toThrow(ValidationError)
    })

    it('isFernetToken tells tokens from other text', () => {
      expect(isFernetToken(fernetEncrypt(key, Buffer.from('x')))).toBe(true)
      const ring = Keyring.from({ keys: { k1: b64(key) }, current: 'k1' })
      const envelope = encryptValue(ring, 'x', { table: 't', column: 'c', rowId: 'r' })
      for (const text of ['', 'hello', 'gAAAA', 'gAAAAA%%%%', 'gAAAAA AAAA', 'hAAAAAAA', envelope]) {
        expect(isFernetToken(text)).toBe(false)
      }
      for (const value of [null, undefined, 42, Buffer.from('gAAAAAAA')])
        expect(isFernetToken(value as unknown as string)).toBe(false)
    })

    it('fernetTimestamp reads the time a token was made (whole seconds)', () => {
      const at = new Date('2024-05-01T12:34:56.789Z')
      expect(fernetTimestamp(fernetEncrypt(key, Buffer.from('x'), { now: at }))).toEqual(
        new Date('2024-05-01T12:34:56.000Z'),
      )
      const before = Math.floor(Date.now() / 1000) * 1000
      const stamp = fernetTimestamp(fernetEncrypt(key, Buffer.from('x')))!.getTime()
      expect(stamp).toBeGreaterThanOrEqual(before)
      expect(stamp).toBeLessThanOrEqual(Date.now())
      for (const text of ['', 'hello', '%%%%', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
        expect(fernetTimestamp(text)).toBeUndefined()
      }
    })
  })

  describe('TTL', () => {
    const token = fernetEncrypt(key, Buffer.from(plaintext), { now: T })
    const read = (ttlSeconds: number | undefined, now: Date): string =>
      fernetDecrypt([key], token, { ttlSeconds, now }).toString('utf8')

    it('accepts a token within its TTL, up to the last second', () => {
      expect(read(60, T)).toBe(plaintext)
      expect(read(60, seconds(60))).toBe(plaintext)
      expect(read(3600, seconds(3600))).toBe(plaintext)
    })

    it('refuses an expired token', () => {
      expectDecryptionFailure(() => read(60, seconds(61)), secrets)
      expectDecryptionFailure(() => read(0, seconds(1)), secrets)
      expectDecryptionFailure(() => read(3600, seconds(86_400)), secrets)
    })

    it('allows 60 s of clock skew into the future, and refuses 61 s', () => {
      expect(read(60, seconds(-60))).toBe(plaintext)
      expectDecryptionFailure(() => read(60, seconds(-61)), secrets)
      expectDecryptionFailure(() => read(86_400, seconds(-3600)), secrets)
    })

    it('checks no time without a TTL (as Python does)', () => {
      expect(read(undefined, seconds(10 * 365 * 86_400))).toBe(plaintext)
      expect(read(undefined, seconds(-3600))).toBe(plaintext)
    })

    it('uses the clock when no `now` is given', () => {
      const fresh = fernetEncrypt(key, Buffer.from(plaintext))
      expect(fernetDecrypt([key], fresh, { ttlSeconds: 60 }).toString()).toBe(plaintext)
      const stale = fernetEncrypt(key, Buffer.from(plaintext), { now: new Date(Date.now() - 120_000) })
      expectDecryptionFailure(() => fernetDecrypt([key], stale, { ttlSeconds: 60 }), secrets)
      expect(fernetDecrypt([key], stale, { ttlSeconds: 600 }).toString()).toBe(plaintext)
    })
  })

  describe('several keys (like MultiFernet)', () => {
    const token = fernetEncrypt(key, Buffer.from(plaintext))

    it('reads a token made with any of them, in any position', () => {
      expect(fernetDecrypt([other, key], token).toString()).toBe(plaintext)
      expect(fernetDecrypt([key, other], token).toString()).toBe(plaintext)
      expect(fernetDecrypt([randomBytes(32), randomBytes(32), key], token).toString()).toBe(plaintext)
    })

    it('reads legacy tokens with the keyring’s Fernet keys', () => {
      const ring = Keyring.from({
        keys: { k1: b64(randomBytes(32)) },
        current: 'k1',
        legacyFernetKeys: [pythonShaped(other), pythonShaped(key)],
      })
      expect(fernetDecrypt(ring.fernetKeys(), token).toString()).toBe(plaintext)
    })

    it('refuses when none of them is the key', () => {
      expectDecryptionFailure(() => fernetDecrypt([other], token), secrets)
      expectDecryptionFailure(() => fernetDecrypt([], token), secrets)
      expectDecryptionFailure(() => fernetDecrypt([randomBytes(32), other], token), secrets)
    })
  })

  describe('refuses, always with DecryptionError', () => {
    const token = fernetEncrypt(key, Buffer.from(plaintext), { now: T })
    const bytes = Buffer.from(token, 'base64url')
    const encode = (b: Buffer): string => {
      const text = b.toString('base64url')
      return text + '='.repeat((4 - (text.length % 4)) % 4)
    }

    it('a wrong key, and keys that are not 32 bytes', () => {
      expectDecryptionFailure(() => fernetDecrypt([other], token), secrets)
      expectDecryptionFailure(() => fernetDecrypt([Buffer.alloc(16)], token), secrets)
      expectDecryptionFailure(() => fernetDecrypt([key.subarray(0, 31)], token), secrets)
      // Halves swapped: signing and encryption keys are not interchangeable.
      const swapped = Buffer.concat([key.subarray(16), key.subarray(0, 16)])
      expectDecryptionFailure(() => fernetDecrypt([swapped], token), secrets)
    })

    it('every single-bit flip, anywhere in the token', () => {
      const short = fernetEncrypt(key, Buffer.from('hi'), { now: T })
      const raw = Buffer.from(short, 'base64url')
      expect(encode(raw)).toBe(short)
      for (let bit = 0; bit < raw.length * 8; bit++) {
        expectDecryptionFailure(() => fernetDecrypt([key], encode(flipBit(raw, bit))))
        expectDecryptionFailure(() => fernetDecrypt([key], encode(flipBit(raw, bit)), { ttlSeconds: 60, now: T }))
      }
    })

    it('a random single-bit flip of any token (property)', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 100 }), fc.nat(), (plain, n) => {
          const raw = Buffer.from(fernetEncrypt(key, Buffer.from(plain)), 'base64url')
          expectDecryptionFailure(() => fernetDecrypt([key, other], encode(flipBit(raw, n % (raw.length * 8)))))
        }),
        { numRuns: runs(300) },
      )
    })

    it('truncation at every length (text and bytes), and anything appended', () => {
      for (let length = 0; length < token.length; length++) {
        expectDecryptionFailure(() => fernetDecrypt([key], token.slice(0, length)), secrets)
      }
      for (let length = 0; length < bytes.length; length++) {
        expectDecryptionFailure(() => fernetDecrypt([key], encode(bytes.subarray(0, length))), secrets)
      }
      for (const tail of ['=', 'AAAA', 'A===', '\n', ' ']) {
        expectDecryptionFailure(() => fernetDecrypt([key], token + tail), secrets)
      }
      expectDecryptionFailure(() => fernetDecrypt([key], encode(Buffer.concat([bytes, Buffer.alloc(16)]))), secrets)
    })

    it('non-canonical base64 of the same bytes', () => {
      const data = token.replace(/=+$/, '')
      expect(data.length % 4).not.toBe(0)
      const padding = token.slice(data.length)
      expectDecryptionFailure(() => fernetDecrypt([key], nonCanonical(data) + padding), secrets)
    })

    it('the standard base64 alphabet instead of the URL-safe one', () => {
      let t = token
      while (!/[-_]/.test(t)) t = fernetEncrypt(key, Buffer.from(plaintext), { now: T })
      const standard = t.replace(/-/g, '+').replace(/_/g, '/')
      expectDecryptionFailure(() => fernetDecrypt([key], standard), secrets)
    })

    it('missing padding, or the wrong amount of it', () => {
      expect(token).toMatch(/=$/)
      expectDecryptionFailure(() => fernetDecrypt([key], token.replace(/=+$/, '')), secrets)
      expectDecryptionFailure(() => fernetDecrypt([key], token.replace(/=$/, '')), secrets)
      expectDecryptionFailure(() => fernetDecrypt([key], `${token}=`), secrets)
    })

    it('another version byte, even with a valid MAC', () => {
      const body = Buffer.from(bytes.subarray(0, bytes.length - 32))
      body[0] = 0x81
      const mac = createHmac('sha256', key.subarray(0, 16)).update(body).digest()
      expectDecryptionFailure(() => fernetDecrypt([key], encode(Buffer.concat([body, mac]))), secrets)
    })

    it.each([
      ['an empty string', ''],
      ['garbage', 'not a token at all'],
      ['an envelope', 'v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA'],
      ['only the prefix', 'gAAAAA=='],
    ])('%s', (_, text) => {
      expectDecryptionFailure(() => fernetDecrypt([key], text), secrets)
    })

    it.each([null, undefined, 42, {}])('a non-string: %s', (value) => {
      expectDecryptionFailure(() => fernetDecrypt([key], value as string), secrets)
    })

    it('a non-string holding a token', () => {
      expectDecryptionFailure(() => fernetDecrypt([key], Buffer.from(token) as unknown as string), secrets)
      expectDecryptionFailure(() => fernetDecrypt([key], [token] as unknown as string), secrets)
    })
  })
})
