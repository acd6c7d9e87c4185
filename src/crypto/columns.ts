import type { Knex } from 'knex'
import { ConfigError, ValidationError } from '../errors/index.js'
import { blindIndex, type BlindIndexOptions } from './blind-index.js'
import { decryptValue, encryptValue } from './envelope.js'
import { fernetDecrypt, isFernetToken } from './fernet.js'
import type { Keyring } from './keyring.js'

/**
 * How a model's encrypted property is stored: always as `<column>_ciphertext` (an envelope, see `encryptValue`),
 * and with `blindIndex` also as `<column>_bidx`, for equality lookups.
 *
 * @example
 * ```ts
 * static override encrypted = { adminPassword: {}, apiToken: { blindIndex: { bytes: 16 } } }
 * ```
 */
export interface EncryptedColumnOptions {
  readonly blindIndex?: boolean | BlindIndexOptions
}

/** One encrypted property of a model, with its columns. @internal */
export interface EncryptedProperty {
  readonly property: string
  readonly ciphertextColumn: string
  readonly blindIndexColumn: string | undefined
  readonly blindIndex: BlindIndexOptions | undefined
}

/** What this module reads from a model class. */
interface EncryptedModelClass {
  readonly name: string
  readonly tableName: string
  readonly encrypted?: Readonly<Record<string, EncryptedColumnOptions>> | undefined
  readonly prototype: object
  readonly columnNameMappers?: { format?: (json: object) => object } | undefined
  knex(): Knex | undefined
}

const properties = new WeakMap<object, readonly EncryptedProperty[]>()

/**
 * The encrypted properties a model declares in `static encrypted`, checked once per class.
 *
 * @internal
 */
export function encryptedProperties(model: EncryptedModelClass): readonly EncryptedProperty[] {
  let list = properties.get(model)
  if (list === undefined) {
    const declared = model.encrypted ?? {}
    list = Object.freeze(
      Object.entries(declared).map(([property, options]) => {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(property) || typeof options !== 'object' || options === null) {
          throw new ConfigError(`${model.name}.encrypted.${property}`, 'must name a property and give its options.')
        }
        // Through the column mappers directly: objection's propertyNameToColumnName makes a model instance, and the
        // constructor of a model with encrypted properties comes here.
        const formatted = model.columnNameMappers?.format?.({ [property]: null })
        const base = formatted === undefined ? property : (Object.keys(formatted)[0] ?? property)
        const index = options.blindIndex
        return Object.freeze({
          property,
          ciphertextColumn: `${base}_ciphertext`,
          blindIndexColumn: index === undefined || index === false ? undefined : `${base}_bidx`,
          blindIndex: index === undefined || index === false ? undefined : index === true ? {} : index,
        })
      }),
    )
    properties.set(model, list)
  }
  return list
}

const keyrings = new WeakMap<object, Keyring>()

/** Knex instances and their transactions share one `client.config` object: the key of their keyring. */
function configOf(knex: Knex): object | undefined {
  return (knex as unknown as { client?: { config?: object } }).client?.config
}

/** Makes a database's keyring reachable from its knex (and its transactions). @internal */
export function registerKeyring(knex: Knex, keyring: Keyring): void {
  const config = configOf(knex)
  if (config !== undefined) keyrings.set(config, keyring)
}

/** The keyring of the database a knex (or transaction) belongs to. @internal */
export function keyringOf(knex: Knex | undefined): Keyring | undefined {
  const config = knex === undefined ? undefined : configOf(knex)
  return config === undefined ? undefined : keyrings.get(config)
}

/** What a model instance was loaded with (ciphertexts) and was given or has read (plaintexts). */
interface Slot {
  plaintext: Record<string, unknown>
  /** The id of the row a patch is for (a patch model has no id of its own). */
  rowId?: string
}

/**
 * Plaintexts are kept outside the instances, so nothing in them (not `toJSON()`, not `util.inspect`) shows a secret.
 * The ciphertexts a row was loaded with are on the instance under a symbol (out of `toJSON()`; cheap to set for
 * 1,000 rows; an envelope shown by `util.inspect` reveals nothing).
 */
const slots = new WeakMap<object, Slot>()
const CIPHERTEXTS = Symbol('wincloud-data:ciphertexts')

function ciphertextsOf(model: object): Record<string, string | null> | undefined {
  return (model as { [CIPHERTEXTS]?: Record<string, string | null> })[CIPHERTEXTS]
}

function slotOf(model: object): Slot {
  let slot = slots.get(model)
  if (slot === undefined) {
    slot = { plaintext: {} }
    slots.set(model, slot)
  }
  return slot
}

/**
 * The plaintext of a stored value: an envelope under any key on the ring, or a Fernet token the Python backend wrote
 * (a string), until rotation moves it to an envelope.
 *
 * @internal
 */
export function readStoredValue(
  keyring: Keyring,
  text: string,
  place: { readonly table: string; readonly column: string; readonly rowId: string },
): unknown {
  return isFernetToken(text)
    ? fernetDecrypt(keyring.fernetKeys(), text).toString('utf8')
    : decryptValue(keyring, text, place)
}

const installed = new WeakSet<object>()

/**
 * Defines each encrypted property as an accessor on the prototype of the class that declares `encrypted`: reading
 * decrypts (once) the ciphertext the row was loaded with, so rows whose secret nobody reads cost no decryption;
 * writing keeps the plaintext for the next save. The properties are not enumerable: `toJSON()` never shows them.
 *
 * @internal
 */
export function installEncryptedAccessors(model: EncryptedModelClass): void {
  let owner: EncryptedModelClass | undefined = model
  while (owner !== undefined && !Object.prototype.hasOwnProperty.call(owner, 'encrypted')) {
    owner = Object.getPrototypeOf(owner) as EncryptedModelClass | undefined
  }
  if (owner === undefined || installed.has(owner)) return
  installed.add(owner)
  for (const encrypted of encryptedProperties(owner)) {
    Object.defineProperty(owner.prototype, encrypted.property, {
      configurable: true,
      enumerable: false,
      get(this: { id?: unknown; constructor: EncryptedModelClass }) {
        const slot = slots.get(this)
        if (slot !== undefined && encrypted.property in slot.plaintext) return slot.plaintext[encrypted.property]
        const ciphertext = ciphertextsOf(this)?.[encrypted.ciphertextColumn]
        if (ciphertext === undefined || ciphertext === null) return ciphertext === null ? null : undefined
        const modelClass = this.constructor
        const keyring = keyringOf(modelClass.knex() ?? undefined)
        if (keyring === undefined) {
          throw new ConfigError('encryption', `is needed to read ${modelClass.name}.${encrypted.property}.`)
        }
        const value = readStoredValue(keyring, ciphertext, {
          table: modelClass.tableName,
          column: encrypted.ciphertextColumn,
          rowId: String(this.id),
        })
        slotOf(this).plaintext[encrypted.property] = value
        return value
      },
      set(this: object, value: unknown) {
        slotOf(this).plaintext[encrypted.property] = value
      },
    })
  }
}

/**
 * Keeps a loaded row's ciphertext column aside (not as a property) for the accessor to decrypt on first read.
 * Returns true when the column was one of the model's encrypted or blind-index columns.
 *
 * @internal
 */
export function absorbEncryptedColumn(
  model: object,
  modelClass: EncryptedModelClass,
  column: string,
  value: unknown,
): boolean {
  const kind = encryptedColumnKinds(modelClass).get(column)
  if (kind === undefined) return false
  if (kind !== BLIND_INDEX) {
    const holder = model as { [CIPHERTEXTS]?: Record<string, string | null> }
    ;(holder[CIPHERTEXTS] ??= {})[column] = typeof value === 'string' ? value : null
    const slot = slots.get(model)
    if (slot !== undefined && kind in slot.plaintext) delete slot.plaintext[kind]
  }
  return true
}

const BLIND_INDEX = '\u0000blind-index'
const columnKinds = new WeakMap<object, ReadonlyMap<string, string>>()

/** Per class: envelope column → its property, blind-index column → a marker. */
function encryptedColumnKinds(modelClass: EncryptedModelClass): ReadonlyMap<string, string> {
  let kinds = columnKinds.get(modelClass)
  if (kinds === undefined) {
    const map = new Map<string, string>()
    for (const e of encryptedProperties(modelClass)) {
      map.set(e.ciphertextColumn, e.property)
      if (e.blindIndexColumn !== undefined) map.set(e.blindIndexColumn, BLIND_INDEX)
    }
    kinds = map
    columnKinds.set(modelClass, kinds)
  }
  return kinds
}

/** Tells a patch model which row it will be written to, so its encrypted values can be bound to that row. @internal */
export function setRowIdHint(model: object, rowId: string): void {
  slotOf(model).rowId = rowId
}

/** The row id a patch model was told it is for. @internal */
export function rowIdHint(model: object): string | undefined {
  return slots.get(model)?.rowId
}

/** Whether a patch or row names an encrypted property of the model. @internal */
export function namesEncrypted(modelClass: EncryptedModelClass, data: object): boolean {
  return encryptedProperties(modelClass).some((e) => e.property in data)
}

/** Whether a model instance was given a value (or null) for an encrypted property. @internal */
export function givenPlaintext(model: object, property: string): { value: unknown } | undefined {
  const slot = slots.get(model)
  return slot !== undefined && property in slot.plaintext ? { value: slot.plaintext[property] } : undefined
}

/**
 * The database columns of a model's encrypted properties for one row: the envelope bound to the row's id, and the
 * blind index; null for null. Only properties the model instance was given.
 *
 * @internal
 */
export function encryptedColumns(
  keyring: Keyring | undefined,
  modelClass: EncryptedModelClass,
  model: object,
  rowId: string,
): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const encrypted of encryptedProperties(modelClass)) {
    const given = givenPlaintext(model, encrypted.property)
    if (given === undefined) continue
    if (keyring === undefined) {
      throw new ConfigError('encryption', `is needed to write ${modelClass.name}.${encrypted.property}.`)
    }
    const { value } = given
    if (value !== null && value !== undefined && typeof value !== 'string' && typeof value !== 'object') {
      throw new ValidationError(`${modelClass.name}.${encrypted.property} must be a string, a JSON value or null.`, [
        { field: encrypted.property, message: 'must be a string, a JSON value or null' },
      ])
    }
    out[encrypted.ciphertextColumn] = encryptValue(keyring, value, {
      table: modelClass.tableName,
      column: encrypted.ciphertextColumn,
      rowId,
    })
    if (encrypted.blindIndexColumn !== undefined) {
      out[encrypted.blindIndexColumn] =
        typeof value === 'string'
          ? blindIndex(keyring, modelClass.tableName, encrypted.blindIndexColumn, value, encrypted.blindIndex)
          : null
    }
  }
  return out
}
