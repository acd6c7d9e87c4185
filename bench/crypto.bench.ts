import { execFileSync } from 'node:child_process'
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { decryptValue, encryptValue } from '../src/crypto/envelope.js'
import { fernetDecrypt, fernetEncrypt } from '../src/crypto/fernet.js'
import { Keyring } from '../src/crypto/keyring.js'
import { defineBenchmark, type Benchmark } from './harness.js'

/** A synchronous side as the harness takes it. */
const sync =
  (work: () => void): (() => Promise<void>) =>
  () =>
    Promise.resolve(work())

/** Operations per timed call: one encrypt + decrypt takes a few microseconds, too little to time alone. */
const BATCH = 200

/**
 * The crypto primitives against node:crypto doing the same work: our envelope (AES-256-GCM, associated data, a
 * typed plaintext, base64url text) against bare AES-256-GCM encrypt + decrypt of the same bytes, at 32 B and 1 KiB;
 * our Fernet against the same AES-128-CBC + HMAC-SHA256 on node:crypto, and against Python's `cryptography.fernet`
 * (measured in a python3 subprocess, when one with `cryptography` is there; printed, not a ratio of the table).
 */
export function cryptoBenchmarks(): Benchmark[] {
  const keyring = Keyring.from({ keys: { k1: randomBytes(32).toString('base64') }, current: 'k1' })
  const place = {
    table: 'droplets',
    column: 'admin_password_ciphertext',
    rowId: '01a212cc-d2ec-70f6-ac67-4c642e6af428',
  }
  const key = randomBytes(32)
  const aad = Buffer.from('droplets/admin_password_ciphertext/01a212cc-d2ec-70f6-ac67-4c642e6af428')
  const envelope = (value: string) => () => {
    for (let i = 0; i < BATCH; i++) {
      if (decryptValue(keyring, encryptValue(keyring, value, place), place) !== value) throw new Error('round trip')
    }
  }
  const rawGcm = (value: string) => () => {
    for (let i = 0; i < BATCH; i++) {
      const nonce = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, nonce)
      cipher.setAAD(aad)
      const sealed = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()])
      const tag = cipher.getAuthTag()
      const decipher = createDecipheriv('aes-256-gcm', key, nonce)
      decipher.setAAD(aad)
      decipher.setAuthTag(tag)
      if (Buffer.concat([decipher.update(sealed), decipher.final()]).toString('utf8') !== value) throw new Error('rt')
    }
  }
  const fernetKey = randomBytes(32)
  const small = 'x'.repeat(32)
  const fernet = () => {
    for (let i = 0; i < BATCH; i++) {
      if (fernetDecrypt([fernetKey], fernetEncrypt(fernetKey, Buffer.from(small))).toString() !== small) {
        throw new Error('round trip')
      }
    }
  }
  let pythonOpsPerSecond: number | undefined
  try {
    const out = execFileSync(
      'python3',
      [
        '-c',
        `import timeit
from cryptography.fernet import Fernet
f = Fernet(Fernet.generate_key())
data = b"x" * 32
n = 20000
t = min(timeit.repeat(lambda: f.decrypt(f.encrypt(data)), number=n, repeat=3))
print(n / t)`,
      ],
      { encoding: 'utf8' },
    )
    pythonOpsPerSecond = Number(out.trim())
  } catch {
    console.log('  (python3 with cryptography not found: no Python Fernet figure)')
  }
  return [
    defineBenchmark({
      name: `envelope encrypt+decrypt 32 B ×${BATCH} vs raw AES-256-GCM`,
      target: 1.25,
      library: sync(envelope(small)),
      raw: sync(rawGcm(small)),
    }),
    defineBenchmark({
      name: `envelope encrypt+decrypt 1 KiB ×${BATCH} vs raw AES-256-GCM`,
      target: 1.25,
      library: sync(envelope('y'.repeat(1024))),
      raw: sync(rawGcm('y'.repeat(1024))),
    }),
    defineBenchmark({
      name: `Fernet encrypt+decrypt 32 B ×${BATCH} vs raw AES-256-GCM`,
      setup: async () => {
        const started = process.hrtime.bigint()
        for (let i = 0; i < 20; i++) fernet()
        const ours = (20 * BATCH) / (Number(process.hrtime.bigint() - started) / 1e9)
        console.log(
          `  Fernet 32 B encrypt+decrypt: ours ${Math.round(ours).toLocaleString('en')} ops/s` +
            (pythonOpsPerSecond === undefined
              ? ''
              : `, Python's cryptography ${Math.round(pythonOpsPerSecond).toLocaleString('en')} ops/s ` +
                `(${(ours / pythonOpsPerSecond).toFixed(2)}×, target ≥ 2×)`),
        )
        await Promise.resolve()
      },
      library: sync(fernet),
      raw: sync(rawGcm(small)),
    }),
  ]
}
