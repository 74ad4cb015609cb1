// Run by TestKafkaJSClient: @kafkajs/confluent-schema-registry, a client
// nobody here wrote, registers, reads, encodes and decodes JSON Schema and
// Protobuf schemas against the registry at argv[2], and prints what it saw
// as one JSON object for the Go test to judge.
'use strict'
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry')

async function main() {
  const host = process.argv[2]
  const out = {}
  const reg = new SchemaRegistry({ host }, { [SchemaType.PROTOBUF]: { messageName: 'OrderCreated' } })
  const attempt = async (name, fn) => {
    try {
      out[name] = { ok: true, value: await fn() }
    } catch (e) {
      out[name] = { ok: false, error: String(e && e.message ? e.message : e) }
    }
  }

  // JSON Schema.
  const jsonV1 = { type: 'object', properties: { orderId: { type: 'string' }, total: { type: 'integer' } }, required: ['orderId'], additionalProperties: false }
  await attempt('json_register', async () => (await reg.register({ type: SchemaType.JSON, schema: JSON.stringify(jsonV1) }, { subject: 'PaymentFailed-value' })).id)
  const jid = out.json_register.value
  await attempt('json_latest', () => reg.getLatestSchemaId('PaymentFailed-value'))
  await attempt('json_lookup', () => reg.getRegistryIdBySchema('PaymentFailed-value', { type: SchemaType.JSON, schema: JSON.stringify(jsonV1) }))
  await attempt('json_roundtrip', async () => {
    const buf = await reg.encode(jid, { orderId: 'o1', total: 5 })
    return { hex: buf.toString('hex'), decoded: await reg.decode(buf) }
  })
  await attempt('json_invalid_payload', async () => (await reg.encode(jid, { total: 'five' })).toString('hex'))
  const jsonBad = { type: 'object', properties: { orderId: { type: 'string' }, total: { type: 'integer' }, coupon: { type: 'string' } }, required: ['orderId', 'coupon'], additionalProperties: false }
  await attempt('json_incompatible', async () => (await reg.register({ type: SchemaType.JSON, schema: JSON.stringify(jsonBad) }, { subject: 'PaymentFailed-value' })).id)
  // A JSON schema with a reference to another subject.
  // kafkajs resolves a reference by the referenced schema's $id.
  const address = { $id: 'address.schema.json', type: 'object', properties: { street: { type: 'string' } }, required: ['street'] }
  await attempt('json_ref_base', async () => (await reg.register({ type: SchemaType.JSON, schema: JSON.stringify(address) }, { subject: 'Address' })).id)
  const shipped = { type: 'object', properties: { orderId: { type: 'string' }, to: { $ref: 'address.schema.json' } }, required: ['orderId', 'to'] }
  await attempt('json_ref_register', async () => (await reg.register({
    type: SchemaType.JSON, schema: JSON.stringify(shipped),
    references: [{ name: 'address.schema.json', subject: 'Address', version: 1 }],
  }, { subject: 'OrderShipped-value' })).id)
  await attempt('json_ref_roundtrip', async () => {
    const buf = await reg.encode(out.json_ref_register.value, { orderId: 'o2', to: { street: 'Main 1' } })
    return await reg.decode(buf)
  })
  await attempt('json_ref_invalid_payload', async () => (await reg.encode(out.json_ref_register.value, { orderId: 'o2', to: {} })).toString('hex'))

  // Protobuf.
  const protoV1 = 'syntax = "proto3";\npackage shop;\n\nmessage OrderCreated {\n  string order_id = 1;\n  int64 total = 2;\n  repeated string skus = 3;\n}\n'
  await attempt('proto_register', async () => (await reg.register({ type: SchemaType.PROTOBUF, schema: protoV1 }, { subject: 'OrderCreated-value' })).id)
  const pid = out.proto_register.value
  await attempt('proto_schema', async () => { const s = await reg.getSchema(pid); return s.constructor.name })
  await attempt('proto_lookup', () => reg.getRegistryIdBySchema('OrderCreated-value', { type: SchemaType.PROTOBUF, schema: protoV1 }))
  await attempt('proto_roundtrip', async () => {
    const buf = await reg.encode(pid, { orderId: 'o1', total: 1299, skus: ['A1', 'B2'] })
    const back = await reg.decode(buf)
    return { hex: buf.toString('hex'), decoded: { orderId: back.orderId, total: String(back.total), skus: back.skus } }
  })
  const protoBad = protoV1.replace('int64 total = 2;', 'double total = 2;')
  await attempt('proto_incompatible', async () => (await reg.register({ type: SchemaType.PROTOBUF, schema: protoBad }, { subject: 'OrderCreated-value' })).id)
  const protoV2 = protoV1.replace('repeated string skus = 3;', 'repeated string skus = 3;\n  string coupon = 4;')
  await attempt('proto_compatible', async () => (await reg.register({ type: SchemaType.PROTOBUF, schema: protoV2 }, { subject: 'OrderCreated-value' })).id)
  await attempt('proto_latest', () => reg.getLatestSchemaId('OrderCreated-value'))

  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch((e) => { process.stderr.write(String(e && e.stack ? e.stack : e) + '\n'); process.exit(1) })
