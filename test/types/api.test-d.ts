// Type tests: this file only has to compile (tsc -p tsconfig.json); it is never run.
import {
  createDatabase,
  Droplet,
  User,
  ValidationError,
  type Database,
  type DatabaseConfig,
  type DropletStatus,
  type Scope,
  type SeedResult,
} from '../../src/index.js'
import * as main from '../../src/index.js'
import {
  blindIndex,
  decryptValue,
  encryptValue,
  envelopeKeyId,
  fernetDecrypt,
  fernetEncrypt,
  fernetKey,
  isFernetToken,
  Keyring,
  type BlindIndexOptions,
  type EncryptionConfig,
  type EnvelopeContext,
} from '../../src/crypto.js'
import { hashPassword, passwordNeedsRehash, verifyPassword, type PasswordHashOptions } from '../../src/passwords.js'
import { normalizeSql } from '../../src/sql.js'

export async function typeTests(): Promise<void> {
  const db: Database = await createDatabase({ connection: 'postgres://app@127.0.0.1/app', pool: { max: 5 } })

  // db.model keeps the model's own type, so queries return instances of it.
  const BoundDroplet: typeof Droplet = db.model(Droplet)
  const droplets: Droplet[] = await BoundDroplet.query().where('status', 'active')
  const status: DropletStatus | undefined = droplets[0]?.status
  void status
  const user: User | undefined = await db.model(User).query().findById('id')
  void user?.passwordHash

  // @ts-expect-error an unknown status is not a DropletStatus
  const wrong: DropletStatus = 'running'
  void wrong

  // @ts-expect-error pool.max is a number
  const badConfig: DatabaseConfig = { pool: { max: '10' } }
  void badConfig

  // @ts-expect-error the Redis cache is not part of this version's config
  const laterConfig: DatabaseConfig = { cache: { url: 'redis://127.0.0.1:6379' } }
  void laterConfig

  // @ts-expect-error a replica is a URL or connection fields
  const badReplica: DatabaseConfig = { replicas: [5432] }
  void badReplica

  const seeded: SeedResult = await db.seed.development({ users: 1 })
  // @ts-expect-error seed results are read-only
  seeded.usersCreated = 2

  const error = new ValidationError('x', [{ field: 'name', message: 'is too short' }])
  const field: string | undefined = error.details[0]?.field
  void field

  // A scope is a type a host annotates with; it gets one from db.scope() or db.system(), never with `new`.
  const scope: Scope = db.scope(user!)
  const mine: Droplet[] = await scope.repo(Droplet).list({ limit: 5 })
  void mine
  // @ts-expect-error Scope is exported as a type only, not as a class to construct
  const ScopeClass: unknown = main.Scope
  void ScopeClass

  await db.close()
}

/** The subpath entries: the primitives, typed as before. */
export async function subpathTests(): Promise<void> {
  const config: EncryptionConfig = { keys: { k1: 'a'.repeat(43) + '=' }, current: 'k1' }
  const keyring: Keyring = Keyring.from(config)
  const place: EnvelopeContext = { table: 'tickets', column: 'note_ciphertext', rowId: 'r1' }
  const stored: string = encryptValue(keyring, 'note', place)
  const nothing: null = encryptValue(keyring, null, place)
  void nothing
  const note: unknown = decryptValue(keyring, stored, place)
  const keyId: string | undefined = envelopeKeyId(stored)
  void [note, keyId]
  // @ts-expect-error an envelope's place names its row
  const noRow: EnvelopeContext = { table: 'tickets', column: 'note_ciphertext' }
  void noRow

  const key: Buffer | undefined = fernetKey('a'.repeat(43) + '=')
  const token: string = fernetEncrypt(key!, Buffer.from('secret'))
  const plaintext: Buffer = fernetDecrypt([key!], token, { ttlSeconds: 60 })
  const shaped: boolean = isFernetToken(token)
  const options: BlindIndexOptions = { normalize: 'trim-lowercase', bytes: 16 }
  const index: string = blindIndex(keyring, 'users', 'api_token_bidx', 'token', options)
  void [plaintext, shaped, index]

  const hashOptions: PasswordHashOptions = { cost: 10 }
  const hash: string = await hashPassword('pw', hashOptions)
  const ok: boolean = await verifyPassword('pw', hash)
  const stale: boolean = passwordNeedsRehash(hash, hashOptions, 'pw')
  // @ts-expect-error cost is a number
  await hashPassword('pw', { cost: '10' })
  void [ok, stale]

  const normalized: string = normalizeSql('select 1')
  void normalized

  // The main entry's deprecated aliases are the same functions and class, with the same types.
  const sameHash: typeof hashPassword = main.hashPassword
  const sameRing: main.Keyring = main.Keyring.from(config)
  const sameContext: main.EnvelopeContext = place
  const sameNormalize: typeof normalizeSql = main.normalizeSql
  void [sameHash, sameRing, sameContext, sameNormalize]
}
