//! Feeds arbitrary bytes to the JSON body readers, including the tolerant fastjson reader.

#![no_main]

use ferrum_protocol::body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = body::from_json::<body::HeartbeatData>(data, "HeartbeatData");
    let _ = body::from_json::<body::LockBatchRequestBody>(data, "LockBatchRequestBody");
    let _ = body::from_json::<body::ConsumerConnection>(data, "ConsumerConnection");
    let _ = body::from_json::<body::KvTable>(data, "KVTable");
    let _ = body::ConsumeStats::decode(data);
    let _ = body::TopicStatsTable::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(normalized) = body::normalize_fastjson(text) {
            // Normalizing twice changes nothing more.
            let again = body::normalize_fastjson(&normalized).map(|t| t.into_owned());
            assert_eq!(again.as_deref(), Ok(&*normalized));
        }
    }
});
