import { ConfigError } from '../../errors/index.js'
import { AuditLog, BaseModel, Droplet, User } from '../../models/index.js'

/** The library's own models: always in the registry, first. */
const LIBRARY_MODELS: readonly (typeof BaseModel)[] = [User, Droplet, AuditLog]

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/

/**
 * `models`: the model registry, the library's models then the host's, each table once.
 *
 * @internal
 */
export function parseModels(input: unknown): readonly (typeof BaseModel)[] {
  if (input === undefined) return Object.freeze([...LIBRARY_MODELS])
  if (!Array.isArray(input)) throw new ConfigError('models', 'must be a list of model classes.')
  const models = [...LIBRARY_MODELS]
  const tables = new Map(LIBRARY_MODELS.map((m) => [m.tableName, m]))
  for (const [i, model] of (input as unknown[]).entries()) {
    if (typeof model !== 'function' || !((model as { prototype?: unknown }).prototype instanceof BaseModel)) {
      throw new ConfigError(`models[${i}]`, 'must be a class that extends BaseModel.')
    }
    const modelClass = model as typeof BaseModel
    const table: unknown = modelClass.tableName
    if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
      throw new ConfigError(`models[${i}]`, 'must have a static tableName that is a table name.')
    }
    const known = tables.get(table)
    if (known === modelClass) continue
    if (known !== undefined) {
      throw new ConfigError(`models[${i}]`, `is a second model of the table ${table} (${known.name} has it).`)
    }
    tables.set(table, modelClass)
    models.push(modelClass)
  }
  return Object.freeze(models)
}
