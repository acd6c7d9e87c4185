import type { Knex } from 'knex'

/**
 * The WinCloud core tables: users, droplets, audit_logs.
 *
 * Column names are written in snake_case explicitly, so the migration produces the same schema in the library's
 * own knex and in a host's knex, whatever identifier mappers either uses.
 */

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary()
    t.text('email').notNullable()
    t.text('username').notNullable()
    t.text('password_hash').notNullable()
    t.text('role').notNullable().defaultTo('user')
    t.boolean('is_active').notNullable().defaultTo(true)
    t.jsonb('preferences').notNullable().defaultTo(knex.raw(`'{}'::jsonb`))
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now())
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now())
    t.check(`role ~ '^[a-z][a-z0-9_-]{0,31}$'`, [], 'users_role_format_check')
  })
  await knex.raw('create unique index users_email_unique on users (lower(email))')
  await knex.raw('create unique index users_username_unique on users (lower(username))')
  await knex.raw('create index users_email_is_active_index on users (lower(email), is_active)')

  await knex.schema.createTable('droplets', (t) => {
    t.uuid('id').primary()
    t.uuid('user_id').notNullable().references('id').inTable('users').onDelete('RESTRICT')
    t.text('name').notNullable()
    t.text('region').notNullable()
    t.text('size').notNullable()
    t.text('status').notNullable().defaultTo('building')
    t.specificType('ip_address', 'inet').nullable()
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now())
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now())
    t.check('char_length(name) between 1 and 255', [], 'droplets_name_length_check')
    t.check(`region ~ '^[a-z0-9-]+$'`, [], 'droplets_region_format_check')
    t.check(`size ~ '^[a-z0-9-]+$'`, [], 'droplets_size_format_check')
    t.check(`status in ('building', 'active', 'stopped', 'error', 'deleted')`, [], 'droplets_status_check')
    t.index(['user_id', 'status'], 'droplets_user_id_status_index')
    t.index(['user_id', 'created_at', 'id'], 'droplets_user_id_created_at_id_index')
  })

  await knex.schema.createTable('audit_logs', (t) => {
    t.uuid('id').primary()
    t.uuid('actor_id').nullable()
    t.text('actor_role').nullable()
    t.text('action').notNullable()
    t.text('entity_type').nullable()
    t.text('entity_id').nullable()
    t.jsonb('changes').notNullable().defaultTo(knex.raw(`'{}'::jsonb`))
    t.jsonb('metadata').notNullable().defaultTo(knex.raw(`'{}'::jsonb`))
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now())
    t.index(['entity_type', 'entity_id', 'created_at'], 'audit_logs_entity_index')
    t.index(['actor_id', 'created_at'], 'audit_logs_actor_index')
  })
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('audit_logs')
  await knex.schema.dropTableIfExists('droplets')
  await knex.schema.dropTableIfExists('users')
}
