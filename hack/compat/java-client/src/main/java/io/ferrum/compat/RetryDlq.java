package io.ferrum.compat;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * A listener answers RECONSUME_LATER for "poison" messages: the client sends them back
 * (CONSUMER_SEND_MSG_BACK), they return through %RETRY%group with a growing reconsumeTimes, and
 * after maxReconsumeTimes they are stored in %DLQ%group, where a pull consumer finds them.
 * The broker's retry delays are RocketMQ's default levels 3 and 4 (10 s, 30 s), so this step
 * takes about 45 s.
 *
 * <p>Arguments: NAMESRV TOPIC GROUP.
 */
public final class RetryDlq {
    private static final int MAX_RECONSUME_TIMES = 2;
    private static final int GOOD = 5;
    private static final int POISON = 2;

    public static void main(String[] args) {
        String namesrv = Compat.arg(args, 0, "NAMESRV");
        String topic = Compat.arg(args, 1, "TOPIC");
        String group = Compat.arg(args, 2, "GROUP");
        Compat.run("retry-dlq", () -> scenario(namesrv, topic, group));
    }

    private static void scenario(String namesrv, String topic, String group) throws Exception {
        Map<String, Set<Integer>> attempts = new ConcurrentHashMap<>();
        Map<String, String> wrongTopic = new ConcurrentHashMap<>();
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.setMaxReconsumeTimes(MAX_RECONSUME_TIMES);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
            boolean poisoned = false;
            for (MessageExt m : msgs) {
                attempts.computeIfAbsent(m.getKeys(), k -> ConcurrentHashMap.newKeySet())
                        .add(m.getReconsumeTimes());
                if (!topic.equals(m.getTopic())) {
                    wrongTopic.put(m.getKeys(), m.getTopic());
                }
                poisoned |= m.getKeys().startsWith("poison");
            }
            return poisoned ? ConsumeConcurrentlyStatus.RECONSUME_LATER
                    : ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        // One message per listener call, so a poison message never drags a good one along.
        consumer.setConsumeMessageBatchMaxSize(1);
        consumer.start();

        DefaultMQProducer producer = new DefaultMQProducer(group + "-producer");
        producer.setNamesrvAddr(namesrv);
        producer.start();
        List<String> poisonKeys = new ArrayList<>();
        try {
            for (int i = 0; i < GOOD + POISON; i++) {
                String key = i < POISON ? "poison-" + i : "good-" + i;
                if (i < POISON) {
                    poisonKeys.add(key);
                }
                SendResult r = producer.send(new Message(topic, "TagR", key, Compat.utf8("retry " + key)));
                Compat.checkQuiet(r.getSendStatus() == SendStatus.SEND_OK, "send " + key + ": " + r);
            }
        } finally {
            producer.shutdown();
        }
        Compat.check(true, (GOOD + POISON) + " sends: SEND_OK (" + POISON + " poison)");

        long start = System.nanoTime();
        Set<Integer> wanted = new TreeSet<>();
        for (int t = 0; t <= MAX_RECONSUME_TIMES; t++) {
            wanted.add(t);
        }
        try {
            boolean retried = Compat.await(150, () -> {
                for (String key : poisonKeys) {
                    Set<Integer> seen = attempts.get(key);
                    if (seen == null || !seen.containsAll(wanted)) {
                        return false;
                    }
                }
                return true;
            });
            Compat.check(retried, "each poison message redelivered through %RETRY%" + group
                    + " with reconsumeTimes " + wanted + " within 150 s (seen " + attempts + ")");
            Compat.check(wrongTopic.isEmpty(),
                    "redelivered messages carry the original topic " + (wrongTopic.isEmpty() ? "" : wrongTopic));
            for (int i = POISON; i < GOOD + POISON; i++) {
                Set<Integer> seen = attempts.get("good-" + i);
                Compat.checkQuiet(seen != null && seen.equals(Set.of(0)),
                        "good-" + i + " consumed once with reconsumeTimes 0, saw " + seen);
            }
            Compat.check(true, GOOD + " good messages consumed once, never retried");
        } finally {
            consumer.shutdown();
        }

        String dlq = "%DLQ%" + group;
        DefaultLitePullConsumer dlqReader = new DefaultLitePullConsumer(group + "-dlq-reader");
        dlqReader.setNamesrvAddr(namesrv);
        dlqReader.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        dlqReader.start();
        try {
            Collection<MessageQueue> queues = null;
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (queues == null && System.nanoTime() < deadline) {
                try {
                    queues = dlqReader.fetchMessageQueues(dlq);
                } catch (Exception e) {
                    Thread.sleep(500);
                }
            }
            Compat.check(queues != null && !queues.isEmpty(), dlq + " has a route with queues " + queues);
            dlqReader.assign(queues);
            Set<String> dead = new TreeSet<>();
            while (!dead.containsAll(poisonKeys) && System.nanoTime() < deadline + 30_000_000_000L) {
                for (MessageExt m : dlqReader.poll(1000)) {
                    dead.add(m.getKeys());
                }
            }
            Compat.check(dead.containsAll(poisonKeys) && dead.size() == poisonKeys.size(),
                    dlq + " holds exactly the poison messages " + poisonKeys + " (found " + dead + ")");
            System.out.printf("  retry + DLQ took %.1f s after the sends%n",
                    (System.nanoTime() - start) / 1e9);
        } finally {
            dlqReader.shutdown();
        }
    }
}
