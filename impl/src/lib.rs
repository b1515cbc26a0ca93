//! `watermark-net` will host the model's actors, the very same `impl Actor` types, as real
//! broker processes talking UDP with durable logs. It is empty for now.
