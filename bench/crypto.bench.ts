import { execFileSync } from 'node:child_process'
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { decryptValue, encryptValue } from '../src/crypto/envelope.js'
import { fernetDecrypt, fernetEncrypt } from '../src/crypto/fernet.js'
import { Keyring } from '../src/crypto/keyring.js'
import { Droplet } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

/** The keys `bench/run.ts` gives its database: fixed, the data is thrown away. */
export const BENCH_ENCRYPTION = Object.freeze({
  keys: { bench: Buffer.alloc(32, 11).toString('base64') },
  current: 'bench',
  blindIndexKey: Buffer.alloc(32, 12).toString('base64'),
})

/** `Droplet` without its encrypted property: the ciphertext column is just another string. */
class PlainDroplet extends Droplet {
  // Typed as Droplet's declaration: a subclass's static must fit the base's `as const` type, the value is undefined.
  static override encrypted = undefined as unknown as typeof Droplet.encrypted
}

/**
 * Loading the heavy user's newest 1,000 droplets, each with an encrypted administrator password, as `Droplet`s
 * (the envelope kept aside, decrypted only when read) against the same rows as a `Droplet` subclass that does not
 * know the column is encrypted: when nobody reads the password, and when every one is read.
 */
export async function encryptedLoadBenchmarks({ db, pool, data }: BenchContext): Promise<Benchmark[]> {
  const keyring = Keyring.from(BENCH_ENCRYPTION)
  const { rows } = await pool.query<{ id: string }>(
    `select id::text as id from droplets where user_id = $1 order by created_at desc, id desc limit 1000`,
    [data.heavyUserId],
  )
  const ids = rows.map((r) => r.id)
  const envelopes = ids.map((id, i) =>
    encryptValue(keyring, `admin-${i}-${id.slice(0, 8)}`, {
      table: 'droplets',
      column: 'admin_password_ciphertext',
      rowId: id,
    }),
  )
  await pool.query(
    `update droplets set admin_password_ciphertext = v.value from unnest($1::uuid[], $2::text[]) as v(id, value)
     where droplets.id = v.id`,
    [ids, envelopes],
  )
  const load = <M extends typeof Droplet>(model: M) =>
    db
      .model(model)
      .query()
      .where('user_id', data.heavyUserId)
      .orderBy([
        { column: 'created_at', order: 'desc' },
        { column: 'id', order: 'desc' },
      ])
      .limit(1_000)
  return [
    defineBenchmark({
      name: 'load 1,000 droplets with an encrypted column, not read, vs unencrypted',
      target: 1.1,
      setup: async () => {
        const models = await load(Droplet)
        if (models.length !== 1_000 || models[0]!.adminPassword !== `admin-0-${ids[0]!.slice(0, 8)}`) {
          throw new Error('the encrypted column did not load')
        }
      },
      library: async () => await load(Droplet),
      raw: async () => await load(PlainDroplet),
    }),
    defineBenchmark({
      name: 'load 1,000 droplets and read every encrypted value vs unencrypted',
      target: 2.0,
      library: async () => {
        const models = await load(Droplet)
        let length = 0
        for (const model of models) length += (model.adminPassword ?? '').length
        return length
      },
      raw: async () => await load(PlainDroplet),
    }),
  ]
}

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
      // Python's figure is the best of three runs; ours, more strictly, the median of the timed rounds.
      summary: (result) => {
        const ours = BATCH / (result.library.median / 1e6)
        return (
          `Fernet 32 B encrypt+decrypt: ours ${Math.round(ours).toLocaleString('en')} ops/s` +
          (pythonOpsPerSecond === undefined
            ? ''
            : `, Python's cryptography ${Math.round(pythonOpsPerSecond).toLocaleString('en')} ops/s ` +
              `(${(ours / pythonOpsPerSecond).toFixed(2)}×, target ≥ 2×)`)
        )
      },
      library: sync(fernet),
      raw: sync(rawGcm(small)),
    }),
  ]
}
