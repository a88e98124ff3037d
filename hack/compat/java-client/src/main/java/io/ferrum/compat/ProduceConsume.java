package io.ferrum.compat;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * DefaultMQProducer (sync, async, oneway, batch) while a DefaultMQPushConsumer consumes the same
 * topic concurrently; every message must arrive with its body, tag and user properties.
 *
 * <p>Arguments: NAMESRV TOPIC GROUP KINDS, KINDS a comma list of sync,async,oneway,batch.
 */
public final class ProduceConsume {
    private static final int PER_KIND = 40;
    private static final int BATCH_SIZE = 10;

    record Expected(byte[] body, String tags, Map<String, String> properties) {
    }

    record Received(byte[] body, String tags, Map<String, String> properties) {
    }

    public static void main(String[] args) {
        String namesrv = Compat.arg(args, 0, "NAMESRV");
        String topic = Compat.arg(args, 1, "TOPIC");
        String group = Compat.arg(args, 2, "GROUP");
        List<String> kinds = Arrays.asList(Compat.arg(args, 3, "KINDS").split(","));
        Compat.run("produce-consume " + kinds, () -> scenario(namesrv, topic, group, kinds));
    }

    private static Message message(String topic, String kind, int i, Map<String, Expected> expected) {
        String key = kind + "-" + i;
        String tags = i % 2 == 0 ? "TagA" : "TagB";
        byte[] body = Compat.utf8("body of " + key + " \u00e9\u4e2d " + "x".repeat(i));
        Message msg = new Message(topic, tags, key, body);
        Map<String, String> props = new TreeMap<>();
        props.put("kind", kind);
        props.put("index", Integer.toString(i));
        props.put("note", "user property with spaces & symbols =;:");
        props.forEach(msg::putUserProperty);
        expected.put(key, new Expected(body, tags, props));
        return msg;
    }

    private static void scenario(String namesrv, String topic, String group, List<String> kinds)
            throws Exception {
        Map<String, Received> received = new ConcurrentHashMap<>();
        AtomicInteger deliveries = new AtomicInteger();
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
            for (MessageExt m : msgs) {
                deliveries.incrementAndGet();
                received.putIfAbsent(m.getKeys(),
                        new Received(m.getBody(), m.getTags(), m.getProperties()));
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();

        DefaultMQProducer producer = new DefaultMQProducer(group + "-producer");
        producer.setNamesrvAddr(namesrv);
        producer.start();
        Map<String, Expected> expected = new ConcurrentHashMap<>();
        try {
            if (kinds.contains("sync")) {
                Set<String> ids = ConcurrentHashMap.newKeySet();
                for (int i = 0; i < PER_KIND; i++) {
                    SendResult r = producer.send(message(topic, "sync", i, expected));
                    Compat.checkQuiet(r.getSendStatus() == SendStatus.SEND_OK,
                            "sync send " + i + " answered " + r);
                    Compat.checkQuiet(r.getMsgId() != null && !r.getMsgId().isEmpty()
                            && r.getOffsetMsgId() != null, "sync send " + i + " has msgIds: " + r);
                    ids.add(r.getMsgId());
                }
                Compat.check(ids.size() == PER_KIND,
                        PER_KIND + " sync sends: SEND_OK with distinct msgIds");
            }
            if (kinds.contains("async")) {
                CountDownLatch done = new CountDownLatch(PER_KIND);
                AtomicReference<String> failure = new AtomicReference<>();
                for (int i = 0; i < PER_KIND; i++) {
                    int index = i;
                    producer.send(message(topic, "async", i, expected), new SendCallback() {
                        @Override
                        public void onSuccess(SendResult r) {
                            if (r.getSendStatus() != SendStatus.SEND_OK || r.getMsgId() == null) {
                                failure.compareAndSet(null, "async send " + index + " answered " + r);
                            }
                            done.countDown();
                        }

                        @Override
                        public void onException(Throwable e) {
                            failure.compareAndSet(null, "async send " + index + " failed: " + e);
                            done.countDown();
                        }
                    });
                }
                Compat.checkQuiet(done.await(30, TimeUnit.SECONDS), "async sends completed in 30 s");
                Compat.check(failure.get() == null,
                        failure.get() == null ? PER_KIND + " async sends: SEND_OK with msgIds"
                                : failure.get());
            }
            if (kinds.contains("oneway")) {
                for (int i = 0; i < PER_KIND; i++) {
                    producer.sendOneway(message(topic, "oneway", i, expected));
                }
                Compat.check(true, PER_KIND + " oneway sends accepted by the client");
            }
            if (kinds.contains("batch")) {
                int batches = PER_KIND / BATCH_SIZE;
                for (int b = 0; b < batches; b++) {
                    List<Message> batch = new ArrayList<>();
                    for (int i = b * BATCH_SIZE; i < (b + 1) * BATCH_SIZE; i++) {
                        batch.add(message(topic, "batch", i, expected));
                    }
                    SendResult r = producer.send(batch);
                    Compat.checkQuiet(r.getSendStatus() == SendStatus.SEND_OK,
                            "batch " + b + " answered " + r);
                    Compat.checkQuiet(r.getMsgId() != null
                            && r.getMsgId().split(",").length == BATCH_SIZE,
                            "batch " + b + " has " + BATCH_SIZE + " msgIds: " + r.getMsgId());
                }
                Compat.check(true, batches + " batches of " + BATCH_SIZE
                        + ": SEND_OK with one msgId per message");
            }

            boolean all = Compat.await(60, () -> received.keySet().containsAll(expected.keySet()));
            if (!all) {
                List<String> missing = new ArrayList<>(expected.keySet());
                missing.removeAll(received.keySet());
                Compat.check(false, "push consumer missed " + missing.size() + " of "
                        + expected.size() + " messages within 60 s, e.g. "
                        + missing.subList(0, Math.min(10, missing.size())));
            }
            Compat.check(received.keySet().equals(expected.keySet()),
                    "push consumer received every one of " + expected.size()
                            + " keys, and no others");
            for (Map.Entry<String, Expected> e : expected.entrySet()) {
                Received got = received.get(e.getKey());
                Expected want = e.getValue();
                Compat.checkQuiet(Arrays.equals(got.body(), want.body()),
                        "body of " + e.getKey() + " differs");
                Compat.checkQuiet(want.tags().equals(got.tags()),
                        "tag of " + e.getKey() + ": got " + got.tags() + ", want " + want.tags());
                Compat.checkQuiet(Compat.hasProperties(got.properties(), want.properties()),
                        "user properties of " + e.getKey() + ": got " + got.properties()
                                + ", want " + want.properties());
            }
            Compat.check(true, "bodies, tags and user properties match (" + deliveries.get()
                    + " deliveries for " + expected.size() + " messages)");
        } finally {
            producer.shutdown();
            consumer.shutdown();
        }
    }
}
