-- The saga calls inventory and payment as order-service itself (internal
-- endpoints, the mesh's identity), so the user's bearer token is no
-- longer kept with the order.
ALTER TABLE orders DROP COLUMN token;
