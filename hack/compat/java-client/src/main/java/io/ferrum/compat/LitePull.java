package io.ferrum.compat;

import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * DefaultLitePullConsumer in subscribe mode: poll() returns every message sent to the topic.
 *
 * <p>Arguments: NAMESRV TOPIC GROUP.
 */
public final class LitePull {
    private static final int COUNT = 100;

    public static void main(String[] args) {
        String namesrv = Compat.arg(args, 0, "NAMESRV");
        String topic = Compat.arg(args, 1, "TOPIC");
        String group = Compat.arg(args, 2, "GROUP");
        Compat.run("lite-pull", () -> scenario(namesrv, topic, group));
    }

    private static void scenario(String namesrv, String topic, String group) throws Exception {
        DefaultMQProducer producer = new DefaultMQProducer(group + "-producer");
        producer.setNamesrvAddr(namesrv);
        producer.start();
        Map<String, byte[]> expected = new HashMap<>();
        try {
            for (int i = 0; i < COUNT; i++) {
                String key = "lite-" + i;
                byte[] body = Compat.utf8("lite pull body " + i);
                SendResult r = producer.send(new Message(topic, "TagL", key, body));
                Compat.checkQuiet(r.getSendStatus() == SendStatus.SEND_OK, "send " + i + ": " + r);
                expected.put(key, body);
            }
            Compat.check(true, COUNT + " sync sends: SEND_OK");
        } finally {
            producer.shutdown();
        }

        DefaultLitePullConsumer consumer = new DefaultLitePullConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(topic, "*");
        consumer.start();
        Map<String, byte[]> received = new HashMap<>();
        try {
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (!received.keySet().containsAll(expected.keySet()) && System.nanoTime() < deadline) {
                List<MessageExt> batch = consumer.poll(1000);
                for (MessageExt m : batch) {
                    received.putIfAbsent(m.getKeys(), m.getBody());
                }
            }
            Compat.check(received.keySet().equals(expected.keySet()),
                    "poll() returned all " + COUNT + " messages within 60 s (got "
                            + received.size() + ")");
            for (Map.Entry<String, byte[]> e : expected.entrySet()) {
                Compat.checkQuiet(Arrays.equals(e.getValue(), received.get(e.getKey())),
                        "body of " + e.getKey() + " differs");
            }
            Compat.check(true, "bodies match");
        } finally {
            consumer.shutdown();
        }
    }
}
