"""The assemble stage: versioned Parquet shards with a manifest (:mod:`.shards`,
:mod:`.assemble`) and the JSON exports existing trainers read (:mod:`.exports`)."""
