import type { Knex } from 'knex'
import type { Model } from 'objection'
import { compileScopedWrite } from './query-writes.js'
import { auditShape } from '../audit/recorder.js'
import type { BaseModel } from '../models/base-model.js'
import type { ScopeEnforcement, ScopedQueryBuilder, ScopePort } from '../models/scope-port.js'
import { checkScopedWrite, scopeKnexQuery, type ScopeContext } from './enforce.js'
import { modelAccess } from './model-access.js'

/**
 * What every scope carries for the models' hooks and query builder to call (see models/scope-port.ts): the write
 * checks, the narrowing of objection's queries and the compilation of their writes with audit rows, and the audit
 * shape a write needs first. Stateless: the scope is passed in.
 *
 * @internal
 */
export const SCOPE_ENFORCEMENT: ScopeEnforcement = Object.freeze({
  checkWrite(scope: ScopePort, model: Model & Record<string, unknown>, action: 'create' | 'update'): void {
    checkScopedWrite(model, scope as ScopeContext, action)
  },
  narrow(scope: ScopePort, builder: ScopedQueryBuilder, knexBuilder: Knex.QueryBuilder): void {
    scopeKnexQuery(builder, knexBuilder, scope as ScopeContext)
    if (builder.isInsert() || builder.isUpdate() || builder.isDelete()) {
      compileScopedWrite(builder, knexBuilder, scope as ScopeContext)
    }
  },
  async prepareWrite(_scope: ScopePort, modelClass: typeof Model, knex: Knex): Promise<void> {
    const model = modelClass as typeof BaseModel
    if (model.audited) await auditShape(knex, model, modelAccess(model))
  },
})
