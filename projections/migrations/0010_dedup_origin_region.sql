-- The region whose gateway or Kafka first received each dedup row's record, so a conflict
-- between records of two regions is settled by the cross-region rule (earliest received-at,
-- then region id; docs/contract.md) the same way in every region. NULL on rows written before:
-- those are never superseded.
ALTER TABLE dedup ADD COLUMN origin_region text COLLATE "C";
