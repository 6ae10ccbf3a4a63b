// A KIP-848 group member (group.protocol=consumer) with @confluentinc/kafka-javascript, driven by
// compat_tests/test_groups_consumer_protocol.py and test_ordering_scopes.py. Prints one JSON line
// per event on stdout:
//   {"assigned": [partitions]}                 whenever its assignment changes
//   {"topic": t, "partition": p, "offset": o, "value": v}  per record, committed before the next one
// SIGTERM closes the consumer (it leaves the group) and exits.
//
//   node consumer.js <bootstrap> <topic[,topic...]> <group>
'use strict'

const Kafka = require('@confluentinc/kafka-javascript')

const [bootstrap, topics, group] = process.argv.slice(2)
const consumer = new Kafka.KafkaConsumer({
  'bootstrap.servers': bootstrap,
  'group.id': group,
  'group.protocol': 'consumer',
  'enable.auto.commit': false,
}, { 'auto.offset.reset': 'earliest' })

const print = (event) => process.stdout.write(JSON.stringify(event) + '\n')
let assigned = '[]'
let watcher = null

consumer.on('ready', () => {
  consumer.subscribe(topics.split(','))
  consumer.consume()
  // The assignment as librdkafka holds it, reported when it changes.
  watcher = setInterval(() => {
    const now = JSON.stringify(consumer.assignments().map((tp) => tp.partition).sort((a, b) => a - b))
    if (now !== assigned) {
      assigned = now
      print({ assigned: JSON.parse(now) })
    }
  }, 50)
})

consumer.on('data', (message) => {
  print({ topic: message.topic, partition: message.partition, offset: message.offset, value: message.value.toString() })
  consumer.commitMessageSync(message)
})

// The watcher stops first: a closing consumer refuses assignments() (Local: Erroneous state).
process.on('SIGTERM', () => {
  clearInterval(watcher)
  consumer.disconnect(() => process.exit(0))
})
consumer.connect()
