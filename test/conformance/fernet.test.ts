import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { fernetDecrypt, fernetEncrypt, fernetKey } from '../../src/crypto/fernet.js'
import { DecryptionError } from '../../src/index.js'

/**
 * The Fernet specification's own test vectors (https://github.com/fernet/spec), copied unchanged into ./fernet/.
 * Every vector runs as it is: nothing here adapts or skips one.
 */

interface GenerateVector {
  readonly token: string
  readonly now: string
  readonly iv: readonly number[]
  readonly src: string
  readonly secret: string
}

interface VerifyVector {
  readonly token: string
  readonly now: string
  readonly ttl_sec: number
  readonly src: string
  readonly secret: string
}

interface InvalidVector {
  readonly desc: string
  readonly token: string
  readonly now: string
  readonly ttl_sec: number
  readonly secret: string
}

const load = <T>(name: string): T[] => JSON.parse(readFileSync(join(__dirname, 'fernet', name), 'utf8')) as T[]

const generate = load<GenerateVector>('generate.json')
const verify = load<VerifyVector>('verify.json')
const invalid = load<InvalidVector>('invalid.json')

function keyOf(secret: string): Buffer {
  const key = fernetKey(secret)
  expect(key, 'the vector’s secret is a valid Fernet key').toBeDefined()
  return key!
}

const label = (v: { src: string; now: string }, i: number): string => `#${i}: ${JSON.stringify(v.src)} at ${v.now}`

describe('Fernet spec vectors', () => {
  it('are all there', () => {
    expect(generate.length).toBeGreaterThan(0)
    expect(verify.length).toBeGreaterThan(0)
    expect(invalid.length).toBeGreaterThan(0)
    expect(new Set(invalid.map((v) => v.desc)).size).toBe(invalid.length)
  })

  describe('generate.json', () => {
    for (const [i, v] of generate.entries()) {
      it(`generate ${label(v, i)}`, () => {
        const token = fernetEncrypt(keyOf(v.secret), Buffer.from(v.src, 'utf8'), {
          now: new Date(v.now),
          iv: Buffer.from(v.iv),
        })
        expect(token).toBe(v.token)
      })
    }
  })

  describe('verify.json', () => {
    for (const [i, v] of verify.entries()) {
      it(`verify ${label(v, i)}`, () => {
        const plaintext = fernetDecrypt([keyOf(v.secret)], v.token, { ttlSeconds: v.ttl_sec, now: new Date(v.now) })
        expect(plaintext.toString('utf8')).toBe(v.src)
      })
    }
  })

  describe('invalid.json', () => {
    for (const v of invalid) {
      it(v.desc, () => {
        const key = keyOf(v.secret)
        let error: unknown
        try {
          fernetDecrypt([key], v.token, { ttlSeconds: v.ttl_sec, now: new Date(v.now) })
        } catch (e) {
          error = e
        }
        expect(error).toBeInstanceOf(DecryptionError)
        const e = error as DecryptionError
        expect(e.message).toBe('Decryption failed')
        for (const text of [JSON.stringify(e), String(e.stack), inspect(e)]) {
          expect(text).not.toContain(v.secret.replace(/=+$/, ''))
          expect(text).not.toContain(key.toString('hex'))
        }
      })
    }
  })
})
