package io.ferrum.compat;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.MessageQueueSelector;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * MessageQueueSelector sends keyed by an order id, consumed by a MessageListenerOrderly (which
 * locks its queues with LOCK_BATCH_MQ): each order id's messages arrive in send order, from the
 * one queue the selector chose.
 *
 * <p>Arguments: NAMESRV TOPIC GROUP.
 */
public final class Orderly {
    private static final int ORDERS = 8;
    private static final int PER_ORDER = 25;

    public static void main(String[] args) {
        String namesrv = Compat.arg(args, 0, "NAMESRV");
        String topic = Compat.arg(args, 1, "TOPIC");
        String group = Compat.arg(args, 2, "GROUP");
        Compat.run("orderly", () -> scenario(namesrv, topic, group));
    }

    private static void scenario(String namesrv, String topic, String group) throws Exception {
        Map<Integer, List<Integer>> seen = new ConcurrentHashMap<>();
        Map<Integer, Integer> queueOf = new ConcurrentHashMap<>();
        AtomicReference<String> violation = new AtomicReference<>();
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(namesrv);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerOrderly) (msgs, context) -> {
            for (MessageExt m : msgs) {
                String[] parts = new String(m.getBody(), StandardCharsets.UTF_8).split(":");
                int order = Integer.parseInt(parts[0]);
                int seq = Integer.parseInt(parts[1]);
                List<Integer> list = seen.computeIfAbsent(order, k -> new ArrayList<>());
                synchronized (list) {
                    if (!list.isEmpty() && list.get(list.size() - 1) >= seq) {
                        violation.compareAndSet(null, "order " + order + ": seq " + seq
                                + " after " + list.get(list.size() - 1));
                    }
                    list.add(seq);
                }
                Integer before = queueOf.putIfAbsent(order, m.getQueueId());
                if (before != null && before != m.getQueueId()) {
                    violation.compareAndSet(null, "order " + order + " came from queues "
                            + before + " and " + m.getQueueId());
                }
            }
            return ConsumeOrderlyStatus.SUCCESS;
        });
        consumer.start();

        DefaultMQProducer producer = new DefaultMQProducer(group + "-producer");
        producer.setNamesrvAddr(namesrv);
        producer.start();
        MessageQueueSelector byOrder = (mqs, msg, arg) -> mqs.get((Integer) arg % mqs.size());
        Map<Integer, Integer> sentQueue = new ConcurrentHashMap<>();
        try {
            for (int seq = 0; seq < PER_ORDER; seq++) {
                for (int order = 0; order < ORDERS; order++) {
                    Message msg = new Message(topic, "order", "order-" + order + "-" + seq,
                            Compat.utf8(order + ":" + seq));
                    SendResult r = producer.send(msg, byOrder, order);
                    Compat.checkQuiet(r.getSendStatus() == SendStatus.SEND_OK,
                            "ordered send " + order + ":" + seq + " answered " + r);
                    MessageQueue mq = r.getMessageQueue();
                    sentQueue.putIfAbsent(order, mq.getQueueId());
                }
            }
            Compat.check(true, ORDERS * PER_ORDER + " selector sends: SEND_OK");
            boolean all = Compat.await(60, () -> {
                for (int order = 0; order < ORDERS; order++) {
                    List<Integer> list = seen.get(order);
                    if (list == null) {
                        return false;
                    }
                    synchronized (list) {
                        if (list.size() < PER_ORDER) {
                            return false;
                        }
                    }
                }
                return true;
            });
            Compat.check(all, "orderly consumer received all " + PER_ORDER
                    + " messages of each of " + ORDERS + " orders within 60 s (got " + sizes(seen) + ")");
            Compat.check(violation.get() == null,
                    violation.get() == null ? "every order consumed in send order, from one queue"
                            : violation.get());
            Compat.check(queueOf.equals(sentQueue),
                    "each order consumed from the queue the selector chose " + sentQueue);
        } finally {
            producer.shutdown();
            consumer.shutdown();
        }
    }

    private static String sizes(Map<Integer, List<Integer>> seen) {
        StringBuilder sb = new StringBuilder();
        seen.forEach((order, list) -> {
            synchronized (list) {
                sb.append(order).append('=').append(list.size()).append(' ');
            }
        });
        return sb.toString().trim();
    }
}
