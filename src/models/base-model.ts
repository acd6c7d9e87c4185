import { BoundedMap } from '../internal/bounded-map.js'
import { INTERNAL_COLUMN } from '../internal/identifiers.js'
import {
  AjvValidator,
  Model,
  snakeCaseMappers,
  type CreateValidationErrorArgs,
  type JSONSchema,
  type ModelOptions,
  type Pojo,
  type QueryContext,
  type Validator,
} from 'objection'
import { scopeOf } from './scope-port.js'
import type { ColumnType } from '../access/filter-compiler.js'
import type { Policy } from './policy.js'
import addFormats from 'ajv-formats'
import { uuidv7 } from '../internal/uuid.js'
import { ValidationError, type ValidationDetail } from '../errors/index.js'
import { BaseQueryBuilder } from './base-query-builder.js'
import {
  absorbEncryptedColumn,
  encryptedColumns,
  encryptedProperties,
  givenPlaintext,
  installEncryptedAccessors,
  keyringOf,
  rowIdHint,
  type EncryptedColumnOptions,
} from '../crypto/columns.js'

/** Column → property names per model; bounded, since raw queries may alias columns freely. */
const propertyNameCache = new WeakMap<object, BoundedMap<string, string>>()

function propertyNames(modelClass: object): BoundedMap<string, string> {
  let names = propertyNameCache.get(modelClass)
  if (names === undefined) {
    names = new BoundedMap<string, string>({ maxEntries: 1_000, maxBytes: 256 * 1024 })
    propertyNameCache.set(modelClass, names)
  }
  return names
}

/** JSON-schema properties every {@link BaseModel} has. */
const baseProperties = {
  id: { type: 'string', format: 'uuid' },
  createdAt: {},
  updatedAt: {},
} as const satisfies Record<string, JSONSchema>

interface ErrorItem {
  message?: string
  keyword?: string
}

function validationDetails(data: unknown): ValidationDetail[] {
  if (typeof data !== 'object' || data === null) return []
  const details: ValidationDetail[] = []
  for (const [field, items] of Object.entries(data as Record<string, unknown>)) {
    for (const item of Array.isArray(items) ? (items as ErrorItem[]) : []) {
      const detail: ValidationDetail = { field, message: item.message ?? 'is invalid' }
      details.push(item.keyword === undefined ? detail : { ...detail, keyword: item.keyword })
    }
  }
  return details
}

/**
 * The base class of the library's models, and of a host's own. It gives each row:
 *
 * - an `id` that is a UUIDv7 made in the application (time-ordered, so indexes stay compact);
 * - `createdAt` and `updatedAt`, set on insert and bumped on every update;
 * - validation of inserts and patches against `static jsonSchema` through ajv and ajv-formats, failing with a
 *   {@link ValidationError} that lists each field and why (never the offending value);
 * - snake_case columns in the database, camelCase properties in JavaScript;
 * - database errors as typed errors (see {@link BaseQueryBuilder}).
 *
 * Models are not bound to a database globally: use `db.model(MyModel)` to get the class bound to one database.
 *
 * @example
 * ```ts
 * import { BaseModel } from '@wincloud/data'
 *
 * export class Invoice extends BaseModel {
 *   static override tableName = 'invoices'
 *   static override jsonSchema = {
 *     type: 'object',
 *     required: ['amountCents'],
 *     properties: { ...BaseModel.baseProperties, amountCents: { type: 'integer', minimum: 0 } },
 *   }
 *   declare amountCents: number
 * }
 *
 * const invoice = await db.model(Invoice).query().insertAndFetch({ amountCents: 1200 })
 * ```
 */
export class BaseModel extends Model {
  declare QueryBuilderType: BaseQueryBuilder<this>
  static override QueryBuilder = BaseQueryBuilder
  static override columnNameMappers = snakeCaseMappers()
  static override useLimitInFirst = true

  /**
   * Who may do what to rows of this model (see `definePolicy`). Without one, only admins and `db.system()` reach
   * the model.
   */
  static policy: Policy | undefined = undefined
  /** Properties callers may filter on, with their types. Anything else in a filter is a ValidationError. */
  static filterable: Readonly<Record<string, ColumnType>> | undefined = undefined
  /** Properties callers may sort by. */
  static sortable: readonly string[] | undefined = undefined
  /** The sort of lists that ask for none (default: newest first when `createdAt` is sortable). */
  static defaultSort: readonly string[] | undefined = undefined

  /**
   * Properties whose values never appear in an audit row: a change to one is recorded as
   * `{ field: { redacted: true } }`. `User` lists `passwordHash`.
   */
  static secretFields: readonly string[] = []
  /** Whether writes through scoped repositories leave audit rows (default true; `AuditLog` itself is not). */
  static audited = true
  /**
   * Properties stored encrypted (AES-256-GCM envelopes bound to the row, see docs/encryption.md): property `apiToken`
   * lives in column `api_token_ciphertext` (and `api_token_bidx` with `blindIndex`). Reading the property decrypts it
   * (once, on first read); the property never appears in `toJSON()`; audit rows record it as redacted.
   */
  static encrypted: Readonly<Record<string, EncryptedColumnOptions>> | undefined = undefined

  constructor() {
    super()
    if (new.target.encrypted !== undefined) installEncryptedAccessors(new.target)
  }

  /** The JSON-schema properties of `id`, `createdAt` and `updatedAt`, to spread into a subclass's schema. */
  static readonly baseProperties = baseProperties

  declare id: string
  declare createdAt: Date
  declare updatedAt: Date

  static override createValidator(): Validator {
    return new AjvValidator({
      onCreateAjv: (ajv) => {
        addFormats(ajv)
      },
      options: { allErrors: true, verbose: false, coerceTypes: false, removeAdditional: false },
    })
  }

  static override createValidationError(args: CreateValidationErrorArgs): Error {
    const details = validationDetails(args.data)
    const summary = details.map((d) => `${d.field} ${d.message}`).join('; ')
    const message =
      args.type === 'ModelValidation'
        ? `${this.name} is invalid: ${summary || 'validation failed'}.`
        : (args.message ?? 'Invalid input.')
    return new ValidationError(message, details)
  }

  /**
   * Rows become models without objection's intermediate renamed copy of each row: every column is written straight
   * onto the model under its property name (looked up once per column and class). Same result as objection's path,
   * which still runs for any model that changes `$parseDatabaseJson` or its column name mappers.
   */
  override $setDatabaseJson(json: Pojo): this {
    const modelClass = this.constructor as typeof BaseModel
    if (
      modelClass.prototype.$parseDatabaseJson !== Model.prototype.$parseDatabaseJson ||
      modelClass.columnNameMappers !== BaseModel.columnNameMappers
    ) {
      for (const column of Object.keys(json)) {
        const encrypted =
          modelClass.encrypted !== undefined && absorbEncryptedColumn(this, modelClass, column, json[column])
        if (encrypted || column.startsWith(INTERNAL_COLUMN)) delete json[column]
      }
      return super.$setDatabaseJson(json)
    }
    const names = propertyNames(modelClass)
    const target = this as unknown as Record<string, unknown>
    const encrypted = modelClass.encrypted !== undefined
    for (const column in json) {
      if (encrypted && absorbEncryptedColumn(this, modelClass, column, json[column])) continue
      let property = names.get(column)
      if (property === undefined) {
        // Columns the library selects for itself (keyset cursor values) never become properties.
        property = column.startsWith(INTERNAL_COLUMN)
          ? ''
          : (Object.keys(modelClass.columnNameMappers.parse({ [column]: null }))[0] ?? column)
        names.set(column, property)
      }
      if (property !== '') target[property] = json[column]
    }
    // As objection does: JSON attributes that arrive as strings are parsed.
    for (const attribute of (modelClass as unknown as { getJsonAttributes(): string[] }).getJsonAttributes()) {
      const value = target[attribute]
      if (typeof value === 'string') {
        try {
          target[attribute] = JSON.parse(value)
        } catch {
          // not JSON: keep the string
        }
      }
    }
    return this
  }

  /**
   * Encrypted properties the model was given become their columns: the envelope, bound to the row's id, and the
   * blind index. A patch without a row id (objection's `patch()` on a query) cannot bind them: a ValidationError.
   */
  override $formatDatabaseJson(json: Pojo): Pojo {
    const out = super.$formatDatabaseJson(json)
    const modelClass = this.constructor as typeof BaseModel
    if (modelClass.encrypted === undefined) return out
    const given = encryptedProperties(modelClass as never).filter((e) => givenPlaintext(this, e.property) !== undefined)
    if (given.length === 0) return out
    const rowId = typeof this.id === 'string' ? this.id : rowIdHint(this)
    if (rowId === undefined) {
      throw new ValidationError(
        `${modelClass.name}.${given[0]!.property} is encrypted for its row: write it with create, update, bulkUpdate by ids or bulkUpdateEach.`,
        [{ field: given[0]!.property, message: 'can only be written to one known row at a time' }],
      )
    }
    return Object.assign(
      out,
      encryptedColumns(keyringOf(modelClass.knex() ?? undefined), modelClass as never, this, rowId),
    )
  }

  /** `createdAt` and `updatedAt` are Dates or ISO 8601 strings: their schema cannot say "a Date", so this does. */
  override $beforeValidate(schema: JSONSchema, json: Pojo, options: ModelOptions): JSONSchema {
    for (const field of ['createdAt', 'updatedAt']) {
      const value: unknown = json[field]
      const valid =
        value === undefined ||
        (value instanceof Date && !Number.isNaN(value.getTime())) ||
        (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:?\d{2})$/.test(value))
      if (!valid) {
        throw new ValidationError(`${this.constructor.name} is invalid: ${field} must be a date.`, [
          { field, message: 'must be a Date or an ISO 8601 timestamp', keyword: 'format' },
        ])
      }
    }
    return super.$beforeValidate(schema, json, options)
  }

  override $beforeInsert(context: QueryContext): void {
    const scope = scopeOf(context)
    if (scope !== undefined) scope.enforcement.checkWrite(scope, this as never, 'create')
    if (this.id === undefined || this.id === null) this.id = uuidv7()
    const now = new Date()
    if (this.createdAt === undefined) this.createdAt = now
    if (this.updatedAt === undefined) this.updatedAt = now
  }

  override $beforeUpdate(_options: ModelOptions, context: QueryContext): void {
    const scope = scopeOf(context)
    if (scope !== undefined) scope.enforcement.checkWrite(scope, this as never, 'update')
    this.updatedAt = new Date()
  }
}
