import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { fernetDecrypt, fernetEncrypt, fernetKey, fernetTimestamp } from '../../src/crypto/fernet.js'
import { Keyring } from '../../src/crypto/keyring.js'
import { DecryptionError } from '../../src/index.js'
import { runPython } from '../helpers/python.js'
import { needs } from '../helpers/tools.js'

/**
 * Fernet tokens shared with the Python backend, checked against the system python3's `cryptography.fernet`. All data
 * goes to Python as JSON on stdin (see ../helpers/python.ts); the Python code is constant text.
 */

/** A key as Python's `Fernet.generate_key()` prints it. */
const pythonShaped = (key: Buffer): string => `${key.toString('base64url')}=`

const PLAINTEXTS = ['', 'hello', 'pässwörd ✓ 🔐 密码', 'x'.repeat(16), 'a longer secret, '.repeat(40), '\u0000\u0001\n']

function refused(fn: () => unknown): boolean {
  try {
    fn()
    return false
  } catch (error) {
    expect(error).toBeInstanceOf(DecryptionError)
    expect((error as DecryptionError).message).toBe('Decryption failed')
    return true
  }
}

/** URL-safe base64 with padding, as Python's `base64.urlsafe_b64encode` writes it. */
function encode(bytes: Buffer): string {
  const text = bytes.toString('base64url')
  return text + '='.repeat((4 - (text.length % 4)) % 4)
}

const withPython = needs('python-backend', 'the Fernet tests against Python')

describe.skipIf(!withPython)('Fernet tokens shared with Python (cryptography.fernet)', () => {
  it('reads tokens made by Python, with keys from Fernet.generate_key()', () => {
    const made = runPython<{ key: string; token: string }[]>(
      `from cryptography.fernet import Fernet
out = []
for text in data:
    key = Fernet.generate_key()
    out.append({'key': key.decode(), 'token': Fernet(key).encrypt(text.encode('utf-8')).decode()})
print(json.dumps(out))`,
      PLAINTEXTS,
    )
    expect(made).toHaveLength(PLAINTEXTS.length)
    for (const [i, { key, token }] of made.entries()) {
      const bytes = fernetKey(key)
      expect(bytes).toHaveLength(32)
      expect(fernetDecrypt([bytes!], token).toString('utf8')).toBe(PLAINTEXTS[i])
      expect(fernetDecrypt([bytes!], token, { ttlSeconds: 300 }).toString('utf8')).toBe(PLAINTEXTS[i])
      // The way the library holds them: legacy keys on the keyring.
      const ring = Keyring.from({
        keys: { k1: randomBytes(32).toString('base64') },
        current: 'k1',
        legacyFernetKeys: [key],
      })
      expect(fernetDecrypt(ring.fernetKeys(), token).toString('utf8')).toBe(PLAINTEXTS[i])
      // A token of one key is not read with another.
      const other = fernetKey(made[(i + 1) % made.length]!.key)!
      expect(refused(() => fernetDecrypt([other], token))).toBe(true)
    }
  })

  it('reads Python tokens of arbitrary bytes', () => {
    const plain = Array.from({ length: 8 }, (_, i) => randomBytes(i * 13))
    const made = runPython<{ key: string; token: string }[]>(
      `import base64
from cryptography.fernet import Fernet
out = []
for b in data:
    key = Fernet.generate_key()
    out.append({'key': key.decode(), 'token': Fernet(key).encrypt(base64.b64decode(b)).decode()})
print(json.dumps(out))`,
      plain.map((b) => b.toString('base64')),
    )
    for (const [i, { key, token }] of made.entries()) {
      expect(fernetDecrypt([fernetKey(key)!], token)).toEqual(plain[i])
    }
  })

  it('makes tokens Python reads, with the time they were made', () => {
    const at = new Date('2024-05-01T12:34:56Z')
    const tokens = PLAINTEXTS.map((text) => {
      const key = randomBytes(32)
      return {
        key: pythonShaped(key),
        fresh: fernetEncrypt(key, Buffer.from(text, 'utf8')),
        dated: fernetEncrypt(key, Buffer.from(text, 'utf8'), { now: at }),
      }
    })
    const read = runPython<{ fresh: string; freshTtl: string; dated: string; stamp: number }[]>(
      `from cryptography.fernet import Fernet
out = []
for t in data:
    f = Fernet(t['key'])
    out.append({
        'fresh': f.decrypt(t['fresh']).decode('utf-8'),
        'freshTtl': f.decrypt(t['fresh'], ttl=300).decode('utf-8'),
        'dated': f.decrypt(t['dated']).decode('utf-8'),
        'stamp': f.extract_timestamp(t['dated']),
    })
print(json.dumps(out))`,
      tokens,
    )
    expect(read).toEqual(
      PLAINTEXTS.map((text) => ({ fresh: text, freshTtl: text, dated: text, stamp: at.getTime() / 1000 })),
    )
  })

  it('makes tokens of arbitrary bytes Python reads', () => {
    const key = randomBytes(32)
    const plain = Array.from({ length: 10 }, (_, i) => randomBytes(i * 7))
    const read = runPython<string[]>(
      `import base64
from cryptography.fernet import Fernet
f = Fernet(data['key'])
print(json.dumps([base64.b64encode(f.decrypt(t)).decode() for t in data['tokens']]))`,
      { key: pythonShaped(key), tokens: plain.map((b) => fernetEncrypt(key, b)) },
    )
    expect(read).toEqual(plain.map((b) => b.toString('base64')))
  })

  it('reads what MultiFernet rotation writes, and keeps the token’s time', () => {
    const made = runPython<{ old: string; new: string; original: string; rotated: string; fresh: string }>(
      `from cryptography.fernet import Fernet, MultiFernet
old, new = Fernet.generate_key(), Fernet.generate_key()
original = Fernet(old).encrypt_at_time(data['text'].encode('utf-8'), data['at'])
multi = MultiFernet([Fernet(new), Fernet(old)])
print(json.dumps({
    'old': old.decode(),
    'new': new.decode(),
    'original': original.decode(),
    'rotated': multi.rotate(original).decode(),
    'fresh': multi.encrypt(data['text'].encode('utf-8')).decode(),
}))`,
      { text: 'rotate me ✓', at: 1_600_000_000 },
    )
    const oldKey = fernetKey(made.old)!
    const newKey = fernetKey(made.new)!
    expect(made.rotated).not.toBe(made.original)
    // The rotated token is under the new key only, and keeps the original timestamp (as rotate() does).
    expect(fernetDecrypt([newKey], made.rotated).toString('utf8')).toBe('rotate me ✓')
    expect(refused(() => fernetDecrypt([oldKey], made.rotated))).toBe(true)
    expect(fernetTimestamp(made.rotated)).toEqual(new Date(1_600_000_000_000))
    // New tokens are under the first key, like MultiFernet.encrypt.
    expect(fernetDecrypt([newKey], made.fresh).toString('utf8')).toBe('rotate me ✓')
    expect(refused(() => fernetDecrypt([oldKey], made.fresh))).toBe(true)
    // Both keys, newest first, as MultiFernet([new, old]) and the keyring's legacyFernetKeys hold them.
    const ring = Keyring.from({
      keys: { k1: randomBytes(32).toString('base64') },
      current: 'k1',
      legacyFernetKeys: [made.new, made.old],
    })
    for (const token of [made.original, made.rotated, made.fresh]) {
      expect(fernetDecrypt([newKey, oldKey], token).toString('utf8')).toBe('rotate me ✓')
      expect(fernetDecrypt(ring.fernetKeys(), token).toString('utf8')).toBe('rotate me ✓')
    }
    expect(refused(() => fernetDecrypt([newKey], made.original))).toBe(true)
  })

  it('agrees with decrypt(token, ttl=…) on an expired token made with encrypt_at_time (both refuse)', () => {
    const made = runPython<{ key: string; token: string; ttl60: string | null; ttl7200: string | null; noTtl: string }>(
      `import time
from cryptography.fernet import Fernet, InvalidToken
key = Fernet.generate_key()
f = Fernet(key)
token = f.encrypt_at_time(data.encode('utf-8'), int(time.time()) - 3600)
def attempt(ttl):
    try:
        return f.decrypt(token, ttl=ttl).decode('utf-8')
    except InvalidToken:
        return None
print(json.dumps({
    'key': key.decode(),
    'token': token.decode(),
    'ttl60': attempt(60),
    'ttl7200': attempt(7200),
    'noTtl': attempt(None),
}))`,
      'expired secret',
    )
    const key = fernetKey(made.key)!
    expect(made.ttl60).toBeNull()
    expect(refused(() => fernetDecrypt([key], made.token, { ttlSeconds: 60 }))).toBe(true)
    expect(made.ttl7200).toBe('expired secret')
    expect(fernetDecrypt([key], made.token, { ttlSeconds: 7200 }).toString()).toBe('expired secret')
    expect(made.noTtl).toBe('expired secret')
    expect(fernetDecrypt([key], made.token).toString()).toBe('expired secret')
  })

  it('and Python refuses our expired tokens the same way', () => {
    const key = randomBytes(32)
    const token = fernetEncrypt(key, Buffer.from('expired secret'), { now: new Date(Date.now() - 3_600_000) })
    const verdicts = runPython<(string | null)[]>(
      `from cryptography.fernet import Fernet, InvalidToken
f = Fernet(data['key'])
def attempt(ttl):
    try:
        return f.decrypt(data['token'], ttl=ttl).decode('utf-8')
    except InvalidToken:
        return None
print(json.dumps([attempt(60), attempt(7200), attempt(None)]))`,
      { key: pythonShaped(key), token },
    )
    expect(verdicts).toEqual([null, 'expired secret', 'expired secret'])
    expect(refused(() => fernetDecrypt([key], token, { ttlSeconds: 60 }))).toBe(true)
    expect(fernetDecrypt([key], token, { ttlSeconds: 7200 }).toString()).toBe('expired secret')
  })

  it('agrees with decrypt_at_time on the TTL and clock-skew boundaries', () => {
    const T = 1_700_000_000
    const key = randomBytes(32)
    const ours = fernetEncrypt(key, Buffer.from('edge'), { now: new Date(T * 1000) })
    const offsets = [-3600, -61, -60, -1, 0, 1, 59, 60, 61, 3600]
    const made = runPython<{ token: string; verdicts: { ours: boolean[]; theirs: boolean[] } }>(
      `from cryptography.fernet import Fernet, InvalidToken
f = Fernet(data['key'])
theirs = f.encrypt_at_time(b'edge', data['at'])
def accepts(token, now):
    try:
        f.decrypt_at_time(token, 60, now)
        return True
    except InvalidToken:
        return False
print(json.dumps({
    'token': theirs.decode(),
    'verdicts': {
        'ours': [accepts(data['ours'], data['at'] + o) for o in data['offsets']],
        'theirs': [accepts(theirs, data['at'] + o) for o in data['offsets']],
    },
}))`,
      { key: pythonShaped(key), at: T, ours, offsets },
    )
    const accepts = (token: string): boolean[] =>
      offsets.map((o) => !refused(() => fernetDecrypt([key], token, { ttlSeconds: 60, now: new Date((T + o) * 1000) })))
    const expected = offsets.map((o) => o >= -60 && o <= 60)
    expect(made.verdicts.ours).toEqual(expected)
    expect(made.verdicts.theirs).toEqual(expected)
    expect(accepts(ours)).toEqual(expected)
    expect(accepts(made.token)).toEqual(expected)
  })

  it('refuses the tampered and truncated tokens Python refuses', () => {
    const key = randomBytes(32)
    const token = fernetEncrypt(key, Buffer.from('do not touch'))
    const raw = Buffer.from(token, 'base64url')
    const tampered: string[] = []
    for (const byte of [0, 1, 8, 9, 24, 25, raw.length - 33, raw.length - 32, raw.length - 1]) {
      for (const bit of [0, 7]) {
        const copy = Buffer.from(raw)
        copy[byte]! ^= 1 << bit
        tampered.push(encode(copy))
      }
    }
    for (const length of [0, 1, 9, 25, 41, raw.length - 32, raw.length - 16, raw.length - 1]) {
      tampered.push(encode(raw.subarray(0, length)))
    }
    tampered.push(fernetEncrypt(randomBytes(32), Buffer.from('do not touch')))
    const theirs = runPython<boolean[]>(
      `from cryptography.fernet import Fernet, InvalidToken
f = Fernet(data['key'])
def accepts(token):
    try:
        f.decrypt(token)
        return True
    except InvalidToken:
        return False
print(json.dumps([accepts(data['token'])] + [accepts(t) for t in data['tampered']]))`,
      { key: pythonShaped(key), token, tampered },
    )
    expect(theirs).toEqual([true, ...tampered.map(() => false)])
    expect(fernetDecrypt([key], token).toString()).toBe('do not touch')
    for (const t of tampered) expect(refused(() => fernetDecrypt([key], t))).toBe(true)
  })
})
