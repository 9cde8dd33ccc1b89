module fulfillment/loadtest/ratedriver

go 1.21
