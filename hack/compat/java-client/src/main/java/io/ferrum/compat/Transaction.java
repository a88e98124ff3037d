package io.ferrum.compat;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * TransactionMQProducer: a transaction the local listener commits is consumed, one it rolls
 * back never is, and one it leaves UNKNOW is committed when the broker asks
 * (checkLocalTransaction) and then consumed. The broker's check settings are lowered by the
 * script so the check comes within seconds.
 *
 * <p>Arguments: NAMESRV TOPIC GROUP.
 */
public final class Transaction {
    public static void main(String[] args) {
        String namesrv = Compat.arg(args, 0, "NAMESRV");
        String topic = Compat.arg(args, 1, "TOPIC");
        String group = Compat.arg(args, 2, "GROUP");
        Compat.run("transaction", () -> scenario(namesrv, topic, group));
    }

    private static void scenario(String namesrv, String topic, String group) throws Exception {
        Set<String> checked = ConcurrentHashMap.newKeySet();
        Set<String> checkedTopics = ConcurrentHashMap.newKeySet();
        TransactionMQProducer producer = new TransactionMQProducer(group + "-producer");
        producer.setNamesrvAddr(namesrv);
        producer.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                switch (msg.getKeys()) {
                    case "tx-commit":
                        return LocalTransactionState.COMMIT_MESSAGE;
                    case "tx-rollback":
                        return LocalTransactionState.ROLLBACK_MESSAGE;
                    default:
                        return LocalTransactionState.UNKNOW;
                }
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                checked.add(msg.getKeys());
                checkedTopics.add(msg.getTopic());
                return "tx-unknown".equals(msg.getKeys())
                        ? LocalTransactionState.COMMIT_MESSAGE
                        : LocalTransactionState.ROLLBACK_MESSAGE;
            }
        });
        producer.start();
        DefaultLitePullConsumer consumer = null;
        try {
            for (String key : new String[] {"tx-commit", "tx-rollback", "tx-unknown"}) {
                TransactionSendResult r = producer.sendMessageInTransaction(
                        new Message(topic, "TagT", key, Compat.utf8("body of " + key)), null);
                Compat.check(r.getSendStatus() == SendStatus.SEND_OK,
                        key + ": half message SEND_OK, local state " + r.getLocalTransactionState());
            }

            consumer = new DefaultLitePullConsumer(group);
            consumer.setNamesrvAddr(namesrv);
            consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
            consumer.subscribe(topic, "*");
            consumer.start();
            Set<String> received = new HashSet<>();
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (!received.contains("tx-unknown") && System.nanoTime() < deadline) {
                List<MessageExt> batch = consumer.poll(1000);
                for (MessageExt m : batch) {
                    received.add(m.getKeys());
                    Compat.checkQuiet(m.getProperty("TRAN_MSG") == null,
                            m.getKeys() + " was consumed with TRAN_MSG still set");
                }
            }
            Compat.check(received.contains("tx-commit"), "the committed message is consumed");
            Compat.check(checked.contains("tx-unknown"),
                    "the broker asked checkLocalTransaction about the UNKNOW one (checked: "
                            + checked + ")");
            Compat.check(checkedTopics.equals(Set.of(topic)),
                    "the checked message carries its real topic (got " + checkedTopics + ")");
            Compat.check(received.contains("tx-unknown"),
                    "the UNKNOW message, committed by the check, is consumed (got " + received + ")");
            // Anything still to come would be in flight by now; the rollback must never show.
            long settle = System.nanoTime() + 2_000_000_000L;
            while (System.nanoTime() < settle) {
                for (MessageExt m : consumer.poll(500)) {
                    received.add(m.getKeys());
                }
            }
            Compat.check(!received.contains("tx-rollback"), "the rolled-back message is never consumed");
            Compat.check(!checked.contains("tx-commit") && !checked.contains("tx-rollback"),
                    "ended transactions are not checked");
        } finally {
            if (consumer != null) {
                consumer.shutdown();
            }
            producer.shutdown();
        }
    }
}
