// A kafkajs transactional producer (commit, abort, commit) and a read_committed group consumer;
// prints one JSON line with the (offset, value) pairs the consumer read.
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: "kafkajs-txn", brokers: [bootstrap], logLevel: logLevel.ERROR });

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] });
  await admin.disconnect();

  const producer = kafka.producer({
    transactionalId: `${topic}-tx`,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  const rounds = [
    [["a0", "a1"], true],
    [["b0"], false],
    [["c0"], true],
  ];
  for (const [values, commit] of rounds) {
    const txn = await producer.transaction();
    await txn.send({ topic, messages: values.map((value) => ({ value })) });
    if (commit) await txn.commit();
    else await txn.abort();
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-group`, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${got.length} messages`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push([Number(message.offset), message.value.toString()]);
        if (got.length === 3) {
          clearTimeout(timer);
          setTimeout(resolve, 1000); // anything more would be an aborted record
        }
      },
    });
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ got }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
